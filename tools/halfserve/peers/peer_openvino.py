"""OpenVINO on CPU: the transformers model exported to ONNX, read by OpenVINO and compiled for the CPU plugin with
an explicit inference precision (the plugin's default on AVX512-BF16 CPUs is bf16, so fp32 must be asked for)."""
import os

import numpy as np

from peer_common import PeerPackagesMissing, PrecisionSkipped, Runner, argmax_labels

try:
    import openvino
    import torch
    import hf_model
except ImportError as error:
    raise PeerPackagesMissing("openvino peer: %s (needs openvino, torch and transformers)" % error) from error

# halfserve precision -> (OpenVINO INFERENCE_PRECISION_HINT, the OPTIMIZATION_CAPABILITIES entry it needs)
_PRECISIONS = {"fp32": ("f32", "FP32"), "bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}


def versions():
    return {"openvino": openvino.__version__, "torch": torch.__version__, "numpy": np.__version__}


class OpenVinoPeer:
    def __init__(self, model, threads, workdir):
        self.model = model
        self.threads = threads
        self.workdir = workdir
        self.core = openvino.Core()
        self._onnx_path = None

    def onnx_path(self):
        if self._onnx_path is None:
            self._onnx_path = os.path.join(self.workdir, "model.onnx")
            hf_model.export_onnx(hf_model.token_classifier(self.model), self._onnx_path)
        return self._onnx_path

    def compile(self, precision_hint):
        config = {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": precision_hint,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        # Dynamic batch and length, as the ONNX export declares them: one compiled model serves every cell, as a
        # server would use it.
        return self.core.compile_model(self.core.read_model(self.onnx_path()), "CPU", config)

    def runner(self, precision):
        if precision not in _PRECISIONS:
            raise PrecisionSkipped("the openvino peer runs fp32, bf16 and fp16; %s would need NNCF quantization with "
                                   "calibration data" % precision)
        hint, capability = _PRECISIONS[precision]
        capabilities = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if capability not in capabilities:
            raise PrecisionSkipped("OpenVINO's CPU plugin cannot compute in %s on this CPU (its "
                                   "OPTIMIZATION_CAPABILITIES are %s)" % (precision, ", ".join(capabilities)))
        compiled = self.compile(hint)
        request = compiled.create_infer_request()
        actual = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # what the plugin settled on

        def prepare(ids, mask):
            return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

        def run(inputs):
            return request.infer(inputs)[0]

        return Runner(description="OpenVINO %s CPU plugin, transformers' BERT via ONNX, inference precision %s, "
                                  "dynamic shapes, LATENCY hint, %d threads"
                                  % (openvino.__version__.split("-")[0], actual, self.threads),
                      prepare=prepare, run=run, label_ids=argmax_labels)


def open_peer(model, threads, workdir):
    return OpenVinoPeer(model, threads, workdir)
