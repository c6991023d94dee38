"""PyTorch eager: transformers' BertForTokenClassification on the frozen weights, as users of transformers run it."""
import numpy as np

from peer_common import PeerPackagesMissing, PrecisionSkipped, Runner, argmax_labels, system_blas

try:
    import torch
    import transformers
    import hf_model
except ImportError as error:
    raise PeerPackagesMissing("torch peer: %s (needs torch and transformers)" % error) from error

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__}


class TorchPeer:
    def __init__(self, model, threads, workdir):
        del workdir  # nothing to write
        torch.set_num_threads(threads)
        self.model = model
        self.threads = threads
        # Debian builds torch with BLAS_INFO=generic: its fp32 GEMMs (addmm) call the system's libblas.so.3, its
        # bf16 ones oneDNN.
        self.blas = system_blas("torch's fp32 GEMMs")
        self.device = "cpu"

    def use_device(self, device):
        """Runs on a GPU ("cuda") instead: weights and inputs there, each timed run ends with a synchronize."""
        if device != "cuda" or not torch.cuda.is_available():
            raise PrecisionSkipped("PyTorch %s has no usable %s device here" % (torch.__version__, device))
        self.device = device

    def runner(self, precision):
        if precision not in _DTYPES:
            raise PrecisionSkipped("PyTorch has no %s mode for this model (the torch peer runs fp32, bf16, fp16)"
                                   % precision)
        torch_model = hf_model.token_classifier(self.model).to(device=self.device, dtype=_DTYPES[precision])
        _try_once(torch_model, precision, self.device)
        on_gpu = self.device != "cpu"

        def prepare(ids, mask):
            return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

        def run(inputs):
            with torch.inference_mode():
                logits = torch_model(input_ids=inputs[0], attention_mask=inputs[1]).logits
            if on_gpu:
                torch.cuda.synchronize()
            return logits

        if on_gpu:
            gemms = "cuBLAS on %s" % torch.cuda.get_device_name()
        else:
            gemms = "oneDNN" if precision == "bf16" else (self.blas or "torch's BLAS")
        return Runner(description="PyTorch %s eager, transformers %s BertForTokenClassification, %s weights and "
                                  "activations (GEMMs on %s), %d threads"
                                  % (torch.__version__, transformers.__version__, precision, gemms, self.threads),
                      prepare=prepare, run=run, label_ids=lambda logits: argmax_labels(logits.float().cpu().numpy()))


def _try_once(torch_model, precision, device):
    """PyTorch's CPU kernels do not cover every op in every dtype (fp16 GEMMs, most notably, in 1.13): a tiny
    forward pass tells, and its error message is the reason given for skipping."""
    ids = torch.zeros(1, 2, dtype=torch.int64, device=device)
    try:
        with torch.inference_mode():
            torch_model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except RuntimeError as error:
        raise PrecisionSkipped("PyTorch %s cannot run this model in %s on %s: %s"
                               % (torch.__version__, precision, device, str(error).splitlines()[0])) from error


def open_peer(model, threads, workdir):
    return TorchPeer(model, threads, workdir)
