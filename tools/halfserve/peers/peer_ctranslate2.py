"""CTranslate2 on CPU: the transformers BertModel (encoder) converted with CTranslate2's own converter and run with
Encoder.forward_batch on the token ids; CTranslate2 has no token-classification head, so the classifier (one
[hidden, labels] GEMM) is applied to its last hidden state in numpy, inside the timed call."""
import os

import numpy as np

from peer_common import PeerPackagesMissing, PrecisionSkipped, Runner, argmax_labels, system_blas

try:
    import ctranslate2
    import torch
    import transformers
    from ctranslate2.converters import TransformersConverter
    import hf_model
except ImportError as error:
    raise PeerPackagesMissing("ctranslate2 peer: %s (needs ctranslate2, torch and transformers)" % error) from error

# halfserve precision -> CTranslate2 compute type (int8 = int8 weights, float32 for everything else).
_COMPUTE_TYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8_float32"}


def versions():
    return {"ctranslate2": ctranslate2.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__}


class _Vocabulary:
    """What CTranslate2's BERT loader asks of a tokenizer: the token -> id map and the unknown token."""
    unk_token = "[UNK]"

    def __init__(self, tokens):
        self._tokens = tokens

    def get_vocab(self):
        return {token: index for index, token in enumerate(self._tokens)}


class _InMemoryConverter(TransformersConverter):
    """TransformersConverter normally loads the model and tokenizer from a Hugging Face folder; these two hooks
    hand it the encoder already built from the frozen file (only config.json is read from the folder)."""

    def __init__(self, folder, encoder, vocabulary):
        super().__init__(folder)
        self._encoder = encoder
        self._vocabulary = vocabulary

    def load_model(self, model_class, model_name_or_path, **kwargs):
        return self._encoder

    def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
        return _Vocabulary(self._vocabulary)


def _vocabulary(model):
    # Token strings only label the ids inside CTranslate2's model; ids are what the peer feeds. A file without a
    # tokenizer gets placeholder names, unique as CTranslate2 requires.
    tokens = list(model.vocabulary) or ["[UNK]"] + ["[unused%d]" % i for i in range(model.architecture.vocab_size - 1)]
    return tokens[:model.architecture.vocab_size]


def _lengths(mask):
    """CTranslate2 takes a length per row, not a mask: the mask must be ones then zeros."""
    lengths = mask.sum(axis=1)
    prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    if not np.array_equal(prefix, mask.astype(bool)):
        raise ValueError("the ctranslate2 peer needs masks of the form 1...1 0...0 (padding at the end)")
    return lengths.astype(np.int32)


class CTranslate2Peer:
    def __init__(self, model, threads, workdir):
        self.model = model
        self.threads = threads
        self.workdir = workdir
        self._converted = None
        self.classifier_weight = np.ascontiguousarray(model.tensors["classifier.weight"].T)
        self.classifier_bias = model.tensors["classifier.bias"]
        self.blas = system_blas("the numpy classifier's GEMM") or "numpy's BLAS"

    def converted(self):
        """Converted once in float32; each precision is CTranslate2's own conversion of it at load."""
        if self._converted is None:
            encoder = hf_model.encoder_with_pooler(self.model)
            source = os.path.join(self.workdir, "hf")
            encoder.config.save_pretrained(source)
            self._converted = os.path.join(self.workdir, "ct2")
            _InMemoryConverter(source, encoder, _vocabulary(self.model)).convert(self._converted,
                                                                                   quantization="float32")
        return self._converted

    def runner(self, precision):
        if precision not in _COMPUTE_TYPES:
            raise PrecisionSkipped("the ctranslate2 peer runs fp32, bf16, fp16 and int8, not %s" % precision)
        compute_type = _COMPUTE_TYPES[precision]
        supported = ctranslate2.get_supported_compute_types("cpu")
        if compute_type not in supported:
            raise PrecisionSkipped("CTranslate2 %s has no %s compute type on this CPU (supported: %s)"
                                   % (ctranslate2.__version__, compute_type, ", ".join(sorted(supported))))
        encoder = ctranslate2.Encoder(self.converted(), device="cpu", compute_type=compute_type, inter_threads=1,
                                      intra_threads=self.threads)

        def prepare(ids, mask):
            # A StorageView borrows the array's memory: the arrays travel with the views to stay alive.
            arrays = (np.ascontiguousarray(ids, dtype=np.int32), _lengths(mask))
            return arrays, [ctranslate2.StorageView.from_array(array) for array in arrays]

        def run(inputs):
            ids_view, lengths_view = inputs[1]
            hidden = np.asarray(encoder.forward_batch(ids_view, lengths_view).last_hidden_state)
            return hidden @ self.classifier_weight + self.classifier_bias

        return Runner(description="CTranslate2 %s Encoder.forward_batch (BERT encoder plus its unused pooler), "
                                  "compute type %s, %d intra threads; classifier applied in numpy (fp32, %s)"
                                  % (ctranslate2.__version__, compute_type, self.threads, self.blas),
                      prepare=prepare, run=run, label_ids=argmax_labels)


def open_peer(model, threads, workdir):
    return CTranslate2Peer(model, threads, workdir)
