"""TensorFlow on CPU: the same BERT written as a TensorFlow graph (tf.function over constant weights, in the style of
google-research's modeling.py: separate Q/K/V dense layers, additive -10000 mask), as the seed's TF models compute
it. Runs in the `tf` environment; it needs numpy and TensorFlow only."""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the progress lines

import numpy as np

from peer_common import PeerPackagesMissing, PrecisionSkipped, Runner, argmax_labels

try:
    import tensorflow as tf
except ImportError as error:
    raise PeerPackagesMissing("tensorflow peer: %s (needs tensorflow-cpu)" % error) from error

# fp16 is the seed's own case (an fp16 TF model served on CPU): TensorFlow runs it, through oneDNN where the CPU has
# fp16 arithmetic and Eigen otherwise, so it is timed rather than skipped.
_DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}


def versions():
    return {"tensorflow": tf.__version__, "numpy": np.__version__}


def _layer_norm(x, gamma, beta, eps):
    # Statistics in fp32 whatever the compute type, as halfserve and Keras' mixed precision both do.
    x32 = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
    return tf.cast((x32 - mean) * tf.math.rsqrt(variance + eps) * gamma + beta, x.dtype)


class _Weights:
    """The frozen tensors as TF constants: GEMM weights transposed once to [in, out] and cast to the compute
    type; LayerNorm parameters and embeddings stay fp32."""

    def __init__(self, model, dtype):
        self.model = model
        self.dtype = dtype

    def dense(self, name):
        weight = self.model.tensors[name + ".weight"]
        return (tf.constant(np.ascontiguousarray(weight.T), dtype=self.dtype),
                tf.constant(self.model.tensors[name + ".bias"], dtype=self.dtype))

    def fp32(self, name):
        return tf.constant(self.model.tensors[name], dtype=tf.float32)


def _dense(x2d, weight_and_bias):
    weight, bias = weight_and_bias
    return tf.matmul(x2d, weight) + bias


def build_forward(model, dtype):
    """A tf.function (ids, mask) -> fp32 logits with every weight captured as a constant."""
    a = model.architecture
    w = _Weights(model, dtype)
    approximate = a.activation == "gelu_tanh"
    word, position, token_type = (w.fp32("bert.embeddings.%s_embeddings.weight" % kind)
                                  for kind in ("word", "position", "token_type"))
    embedding_norm = (w.fp32("bert.embeddings.LayerNorm.weight"), w.fp32("bert.embeddings.LayerNorm.bias"))
    layers = []
    for index in range(a.num_layers):
        prefix = "bert.encoder.layer.%d." % index
        layers.append({
            "q": w.dense(prefix + "attention.self.query"), "k": w.dense(prefix + "attention.self.key"),
            "v": w.dense(prefix + "attention.self.value"), "out": w.dense(prefix + "attention.output.dense"),
            "norm1": (w.fp32(prefix + "attention.output.LayerNorm.weight"),
                      w.fp32(prefix + "attention.output.LayerNorm.bias")),
            "ffn_in": w.dense(prefix + "intermediate.dense"), "ffn_out": w.dense(prefix + "output.dense"),
            "norm2": (w.fp32(prefix + "output.LayerNorm.weight"), w.fp32(prefix + "output.LayerNorm.bias")),
        })
    classifier = w.dense("classifier")
    heads, head_size, scale = a.num_heads, a.head_size, 1.0 / math.sqrt(a.head_size)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32)])
    def forward(input_ids, attention_mask):
        batch, length = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        embedded = tf.gather(word, input_ids) + position[tf.newaxis, :length] + token_type[0]
        x = tf.reshape(_layer_norm(embedded, *embedding_norm, a.layer_norm_eps), [batch * length, a.hidden_size])
        x = tf.cast(x, dtype)
        adder = (1.0 - tf.cast(attention_mask, tf.float32))[:, tf.newaxis, tf.newaxis, :] * -10000.0

        def split_heads(t):
            return tf.transpose(tf.reshape(t, [batch, length, heads, head_size]), [0, 2, 1, 3])

        for layer in layers:
            q, k, v = (split_heads(_dense(x, layer[name])) for name in ("q", "k", "v"))
            scores = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) * scale + adder
            probabilities = tf.cast(tf.nn.softmax(scores), dtype)  # softmax in fp32, like the LayerNorms
            context = tf.reshape(tf.transpose(tf.matmul(probabilities, v), [0, 2, 1, 3]), [batch * length, -1])
            x = _layer_norm(_dense(context, layer["out"]) + x, *layer["norm1"], a.layer_norm_eps)
            intermediate = tf.nn.gelu(_dense(x, layer["ffn_in"]), approximate=approximate)
            x = _layer_norm(_dense(intermediate, layer["ffn_out"]) + x, *layer["norm2"], a.layer_norm_eps)
        logits = _dense(x, classifier)
        return tf.reshape(tf.cast(logits, tf.float32), [batch, length, -1])

    return forward


class TensorFlowPeer:
    def __init__(self, model, threads, workdir):
        del workdir  # nothing to write
        # Must come before TensorFlow runs its first op, when the thread pools are created.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.model = model
        self.threads = threads

    def runner(self, precision):
        if precision not in _DTYPES:
            raise PrecisionSkipped("the tensorflow peer runs fp32, bf16 and fp16, not %s" % precision)
        forward = build_forward(self.model, _DTYPES[precision])
        _try_once(forward, precision)

        def prepare(ids, mask):
            return tf.constant(ids, dtype=tf.int32), tf.constant(mask, dtype=tf.int32)

        def run(inputs):
            return forward(*inputs).numpy()  # .numpy() waits for the result

        # On x86 Linux TensorFlow uses its oneDNN kernels unless TF_ENABLE_ONEDNN_OPTS says otherwise.
        setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
        onednn = "oneDNN kernels (TensorFlow's default)" if setting is None else "TF_ENABLE_ONEDNN_OPTS=" + setting
        return Runner(description="TensorFlow %s graph (tf.function, constant weights), %s GEMMs with LayerNorm and "
                                  "softmax in fp32, %s, %d intra-op threads"
                                  % (tf.__version__, precision, onednn, self.threads),
                      prepare=prepare, run=run, label_ids=argmax_labels)


def _try_once(forward, precision):
    ids = tf.zeros([1, 2], tf.int32)
    try:
        forward(ids, tf.ones_like(ids))
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError) as error:
        raise PrecisionSkipped("TensorFlow %s cannot run this model in %s on CPU: %s"
                               % (tf.__version__, precision, error.message.splitlines()[0])) from error


def open_peer(model, threads, workdir):
    return TensorFlowPeer(model, threads, workdir)
