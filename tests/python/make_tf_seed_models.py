"""Builds the seed's case with TensorFlow itself: a small BERT in TF1 style (tf.compat.v1, google-research
variable names, tanh GELU, mask -10000) with a `whichPun` punctuation head, and exports it the three ways users
have it — a SavedModel with the signature ac_forward {input, mask} -> {punc_output, punc_logits}, a checkpoint with
bert_config.json and vocab.txt beside it, and a frozen GraphDef — plus TensorFlow's own outputs (expected.json).

Usage: make_tf_seed_models.py OUT_DIR
"""
import json
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain fp32 kernels: the reference should not round

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_v2_behavior()  # TF1 graphs and reference variables, as the seed's TF 1.13 model

CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "vocab_size": 120,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "initializer_range": 0.02,
}
LABELS = ["O", "，", "。", "？", "！", "、"]


def gelu(x):  # google-research modeling.py's GELU: the tanh form
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


def layer_norm(x, scope):
    with tf1.variable_scope(scope):
        size = x.shape[-1]
        gamma = tf1.get_variable("gamma", [size], initializer=tf1.random_normal_initializer(1.0, 0.1))
        beta = tf1.get_variable("beta", [size], initializer=tf1.random_normal_initializer(0.0, 0.1))
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + 1e-12) * gamma + beta


def dense(x, units, scope, activation=None, stddev=0.05):
    with tf1.variable_scope(scope):
        kernel = tf1.get_variable("kernel", [x.shape[-1], units], initializer=tf1.random_normal_initializer(0.0, stddev))
        bias = tf1.get_variable("bias", [units], initializer=tf1.random_normal_initializer(0.0, 0.05))
        y = tf.tensordot(x, kernel, axes=[[len(x.shape) - 1], [0]]) + bias
        return activation(y) if activation else y


def build(input_ids, input_mask):
    c = CONFIG
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    head_size = hidden // heads
    length = tf.shape(input_ids)[1]
    init = tf1.random_normal_initializer(0.0, 0.5)
    with tf1.variable_scope("bert"):
        with tf1.variable_scope("embeddings"):
            word = tf1.get_variable("word_embeddings", [c["vocab_size"], hidden], initializer=init)
            embedded = tf.gather(word, input_ids)
            token_type_ids = tf.zeros_like(input_ids)
            types = tf1.get_variable("token_type_embeddings", [c["type_vocab_size"], hidden], initializer=init)
            one_hot = tf.one_hot(tf.reshape(token_type_ids, [-1]), c["type_vocab_size"])
            embedded += tf.reshape(tf.matmul(one_hot, types), tf.shape(embedded))
            positions = tf1.get_variable("position_embeddings", [c["max_position_embeddings"], hidden], initializer=init)
            embedded += tf.slice(positions, [0, 0], [length, -1])[tf.newaxis]
            x = layer_norm(embedded, "LayerNorm")
        with tf1.variable_scope("encoder"):
            adder = (1.0 - tf.cast(input_mask, tf.float32))[:, tf.newaxis, tf.newaxis, :] * -10000.0
            for i in range(c["num_hidden_layers"]):
                with tf1.variable_scope("layer_%d" % i):
                    with tf1.variable_scope("attention"):
                        with tf1.variable_scope("self"):
                            def split(t):
                                return tf.transpose(tf.reshape(t, [tf.shape(t)[0], length, heads, head_size]), [0, 2, 1, 3])
                            q = split(dense(x, hidden, "query"))
                            k = split(dense(x, hidden, "key"))
                            v = split(dense(x, hidden, "value"))
                            scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(head_size) + adder
                            context = tf.matmul(tf.nn.softmax(scores), v)
                            context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [tf.shape(x)[0], length, hidden])
                        with tf1.variable_scope("output"):
                            x = layer_norm(dense(context, hidden, "dense") + x, "LayerNorm")
                    with tf1.variable_scope("intermediate"):
                        intermediate = dense(x, c["intermediate_size"], "dense", gelu)
                    with tf1.variable_scope("output"):
                        x = layer_norm(dense(intermediate, hidden, "dense") + x, "LayerNorm")
    with tf1.variable_scope("whichPun"):
        logits = dense(x, len(LABELS), "dense", stddev=0.5)
        labels = tf.argmax(logits, axis=-1, name="output")
    return x, logits, labels


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tf1.set_random_seed(1234)
    graph = tf.Graph()
    with graph.as_default():
        input_ids = tf1.placeholder(tf.int32, [None, None], name="input")
        input_mask = tf1.placeholder(tf.int32, [None, None], name="mask")
        sequence_output, logits, labels = build(input_ids, input_mask)
        tf.identity(logits, name="punc_logits")
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            rng = np.random.RandomState(7)
            ids = rng.randint(5, CONFIG["vocab_size"], size=(3, 11)).astype(np.int32)
            mask = np.ones_like(ids)
            ids[:, 0] = 2
            mask[1, 7:] = 0
            ids[1, 7:] = 0
            mask[2, 3:] = 0
            ids[2, 3:] = 0
            feed = {input_ids: ids, input_mask: mask}
            hidden_v, logits_v, labels_v = session.run([sequence_output, logits, labels], feed)

            # Checkpoint (google-research layout) with its config and vocabulary beside it.
            ckpt_dir = os.path.join(out_dir, "checkpoint")
            os.makedirs(ckpt_dir, exist_ok=True)
            tf1.train.Saver().save(session, os.path.join(ckpt_dir, "bert_model.ckpt"), write_meta_graph=False)
            with open(os.path.join(ckpt_dir, "bert_config.json"), "w") as f:
                json.dump(CONFIG, f, indent=2)
            vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["tok%d" % i for i in range(CONFIG["vocab_size"] - 5)]
            with open(os.path.join(ckpt_dir, "vocab.txt"), "w") as f:
                f.write("\n".join(vocab) + "\n")
            with open(os.path.join(out_dir, "labels.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(LABELS) + "\n")

            # SavedModel with the seed's signature.
            saved_dir = os.path.join(out_dir, "saved_model", "1")
            builder = tf1.saved_model.Builder(saved_dir)
            info = tf1.saved_model.utils.build_tensor_info
            signature = tf1.saved_model.signature_def_utils.build_signature_def(
                inputs={"input": info(input_ids), "mask": info(input_mask)},
                outputs={"punc_output": info(labels), "punc_logits": info(graph.get_tensor_by_name("punc_logits:0"))},
                method_name="tensorflow/serving/predict")
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"ac_forward": signature})
            builder.save()

            # Frozen GraphDef: weights as Const nodes.
            frozen = tf1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), ["whichPun/output", "punc_logits"])
            with open(os.path.join(out_dir, "frozen.pb"), "wb") as f:
                f.write(frozen.SerializeToString())

    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "logits": logits_v.tolist(),
                   "label_ids": labels_v.tolist(), "last_hidden_state": hidden_v.tolist(),
                   "note": "computed by TensorFlow %s (graph mode, fp32)" % tf.__version__}, f)
    print("wrote", out_dir)


if __name__ == "__main__":
    main(sys.argv[1])
