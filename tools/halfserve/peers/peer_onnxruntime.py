"""ONNX Runtime: the transformers model exported to ONNX, then optimized the way ONNX Runtime recommends for BERT
(onnxruntime.transformers' fusions: Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization). On CPU
its reduced precision is dynamic int8 quantization, reported as "int8"; on a GPU (CUDA execution provider, where the
installed onnxruntime has it) fp32 and fp16 (the optimizer's float16 conversion)."""
import os

import numpy as np

from peer_common import PeerPackagesMissing, PrecisionSkipped, Runner, argmax_labels, progress

try:
    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    import hf_model
except ImportError as error:
    raise PeerPackagesMissing("onnxruntime peer: %s (needs onnxruntime, onnx, torch and transformers)" % error) \
        from error

# Why the half precisions are not timed (checked on an AVX512-BF16 EPYC while writing this peer): an fp16 graph
# (onnxruntime.transformers' float16 conversion of the optimized model) loads, but the CPU execution provider
# inserts Casts to fp32 around the operators it has no fp16 kernel for, and it ran no faster than fp32; there is
# no bf16 conversion, and no x86 bf16 kernel for these operators at all.
_SKIP_REASONS = {
    "fp16": "ONNX Runtime's CPU execution provider computes an fp16 BERT graph largely in fp32 (it inserts Casts "
            "around the operators it has no fp16 kernel for) and it runs no faster than fp32; this peer's reduced "
            "precision on CPU is int8 (dynamic quantization)",
    "bf16": "ONNX Runtime's CPU execution provider has no bf16 kernels for BERT's operators on x86 (its only CPU "
            "bf16 path is an arm64 GEMM option); this peer's reduced precision on CPU is int8 (dynamic quantization)",
}


def versions():
    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "torch": torch.__version__,
            "numpy": np.__version__}


class OnnxRuntimePeer:
    def __init__(self, model, threads, workdir):
        self.model = model
        self.threads = threads
        self.workdir = workdir
        self.fusions = {}
        self._optimized_path = None
        self._fp16_path = None
        self.device = "cpu"

    def use_device(self, device):
        available = onnxruntime.get_available_providers()
        if device != "cuda" or "CUDAExecutionProvider" not in available:
            raise PrecisionSkipped("ONNX Runtime %s here has no %s execution provider (providers: %s; the GPU build is "
                                   "the onnxruntime-gpu package)" % (onnxruntime.__version__, device, ", ".join(available)))
        self.device = device

    def optimized_fp32(self):
        """Exported and optimized once; int8 is quantized from the same optimized graph."""
        if self._optimized_path is None:
            exported = os.path.join(self.workdir, "model.onnx")
            hf_model.export_onnx(hf_model.token_classifier(self.model), exported)
            architecture = self.model.architecture
            optimized = optimizer.optimize_model(exported, model_type="bert", num_heads=architecture.num_heads,
                                                 hidden_size=architecture.hidden_size, use_gpu=self.device != "cpu")
            self.fusions = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
            progress("onnxruntime fusions: %s" % self.fusions)
            self._optimized_path = os.path.join(self.workdir, "model-optimized.onnx")
            optimized.save_model_to_file(self._optimized_path)
            if self.device != "cpu":
                # ONNX Runtime's recommended fp16 path for BERT on GPUs: the optimized graph converted, fp32 inputs
                # and outputs kept.
                optimized.convert_float_to_float16(keep_io_types=True)
                self._fp16_path = os.path.join(self.workdir, "model-fp16.onnx")
                optimized.save_model_to_file(self._fp16_path)
        return self._optimized_path

    def optimized_fp16(self):
        self.optimized_fp32()
        return self._fp16_path

    def quantized_int8(self):
        path = os.path.join(self.workdir, "model-int8.onnx")
        if not os.path.exists(path):
            # The fused operators are ONNX Runtime's own (com.microsoft), which ONNX shape inference cannot type; the
            # tensors it fails on are all float activations.
            quantize_dynamic(self.optimized_fp32(), path, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return path

    def session(self, path):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider"] if self.device == "cuda" else ["CPUExecutionProvider"]
        return onnxruntime.InferenceSession(path, options, providers=providers)

    def runner(self, precision):
        if self.device == "cpu" and precision in _SKIP_REASONS:
            raise PrecisionSkipped(_SKIP_REASONS[precision])
        if self.device == "cpu":
            graphs = {"fp32": (self.optimized_fp32, "fp32"),
                      "int8": (self.quantized_int8, "dynamic int8 quantization (quantize_dynamic: int8 weights, "
                                                    "activations quantized per call)")}
        else:
            graphs = {"fp32": (self.optimized_fp32, "fp32 (CUDA execution provider)"),
                      "fp16": (self.optimized_fp16, "fp16 (float16 conversion, CUDA execution provider)")}
        if precision not in graphs:
            raise PrecisionSkipped("the onnxruntime peer runs %s on %s, not %s" % (" and ".join(graphs), self.device, precision))
        graph_path, how = graphs[precision]
        session = self.session(graph_path())

        def prepare(ids, mask):
            return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

        fused = ", ".join("%s x%d" % item for item in sorted(self.fusions.items())) or "none"
        return Runner(description="ONNX Runtime %s %s, transformers' BERT exported to ONNX and optimized (fused: %s), "
                                  "%s, %d intra-op threads" % (onnxruntime.__version__, self.device.upper(), fused, how, self.threads),
                      prepare=prepare, run=lambda inputs: session.run(["logits"], inputs)[0], label_ids=argmax_labels)


def open_peer(model, threads, workdir):
    return OnnxRuntimePeer(model, threads, workdir)
