"""Reads a halfserve frozen file (safetensors + JSON metadata) into float32 numpy arrays, with numpy and the
standard library only: the same reader serves every peer's environment (the peers venv with numpy 1.24, the tf
venv with numpy 2), and every peer gets the weights widened exactly as halfserve widens them.
"""
import dataclasses
import json
import struct

import numpy as np

# safetensors dtype names -> how to widen the stored bytes to float32.
_FLOAT_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}


@dataclasses.dataclass
class Architecture:
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    activation: str  # "gelu_erf" or "gelu_tanh"
    layer_norm_eps: float

    @property
    def head_size(self):
        return self.hidden_size // self.num_heads


@dataclasses.dataclass
class FrozenModel:
    architecture: Architecture
    tensors: dict  # Hugging Face BertForTokenClassification name -> float32 array, weights [out, in]
    vocabulary: list  # token strings, index = id; empty when the file has no tokenizer

    @property
    def num_labels(self):
        return self.tensors["classifier.weight"].shape[0]


def _widen(raw, dtype_name):
    if dtype_name == "BF16":
        # bf16 is the top half of an IEEE float32: shifting the bits back up is exact.
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def _read_tensors(header, data):
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype_name = entry["dtype"]
        if dtype_name not in _FLOAT_DTYPES:
            raise ValueError("tensor %s has dtype %s; a frozen file holds only F32, F16 and BF16" % (name, dtype_name))
        begin, end = entry["data_offsets"]
        stored = _FLOAT_DTYPES[dtype_name]
        raw = np.frombuffer(data, dtype=stored, count=(end - begin) // stored.itemsize, offset=begin)
        tensors[name] = _widen(raw, dtype_name).reshape(entry["shape"])
    return tensors


def _read_architecture(metadata):
    fields = json.loads(metadata["halfserve.architecture"])
    if fields.get("model_type", "bert") != "bert":
        raise ValueError("model_type %r is not bert" % fields.get("model_type"))
    if fields["activation"] not in ("gelu_erf", "gelu_tanh"):
        raise ValueError("activation %r is neither gelu_erf nor gelu_tanh" % fields["activation"])
    names = [field.name for field in dataclasses.fields(Architecture)]
    return Architecture(**{name: fields[name] for name in names})


def read_frozen_model(path):
    with open(path, "rb") as f:
        content = f.read()
    if len(content) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (header_length,) = struct.unpack("<Q", content[:8])
    if 8 + header_length > len(content):
        raise ValueError("%s: header length %d runs past the end of the file" % (path, header_length))
    header = json.loads(content[8:8 + header_length])
    metadata = header.get("__metadata__", {})
    if "halfserve.architecture" not in metadata:
        raise ValueError("%s: no halfserve.architecture in the metadata (not a halfserve frozen file?)" % path)
    data = memoryview(content)[8 + header_length:]
    tensors = _read_tensors(header, data)
    if "classifier.weight" not in tensors:
        raise ValueError("%s: no classifier (an encoder-only model has no labels to compare)" % path)
    tokenizer = json.loads(metadata.get("halfserve.tokenizer", "{}"))
    return FrozenModel(architecture=_read_architecture(metadata), tensors=tensors,
                       vocabulary=tokenizer.get("vocab", []))
