"""Runs one peer framework on a halfserve frozen file, timed the way `halfserve bench` times itself, so the bench
can print halfserve/peer ratios on the same model, weights, inputs and thread count.

  run_peer.py --peer {torch|onnxruntime|openvino|ctranslate2|tensorflow} --model FROZEN.safetensors
              --request REQUEST.json --output RESULT.json

REQUEST.json: {"precisions": ["fp32", "bf16", ...], "threads": 2, "device": "cpu" (optional; "cuda": GPU peers only), "seconds_per_cell": 0.5, "min_repetitions": 3,
               "max_repetitions": 200, "cells": [{"length", "batch", "input_ids", "attention_mask"}, ...],
               "check": {"input_ids", "attention_mask"}}
RESULT.json:  {"peer", "versions": {package: version}, "precisions": {precision: {"description", "cells":
               [{"length", "batch", "samples_ms"}], "check_label_ids"} or {"skipped": why}}}

Progress goes to stderr. Exit 0 on success, 3 when the peer's packages are not installed in this Python, 1 on any
other failure. Environments (scripts/python-env.sh): tensorflow runs in the `tf` venv, every other peer in `peers`.
"""
import argparse
import gc
import importlib
import json
import os
import platform
import sys
import tempfile
import traceback

# The helper modules sit in the source tree: no __pycache__ folders there.
sys.dont_write_bytecode = True

PEER_MODULES = {
    "torch": "peer_torch",
    "onnxruntime": "peer_onnxruntime",
    "openvino": "peer_openvino",
    "ctranslate2": "peer_ctranslate2",
    "tensorflow": "peer_tensorflow",
}
# BLAS threads where the peer's own engine is not the BLAS: CTranslate2 brings its own OpenMP runtime, and an
# OpenMP OpenBLAS pool spinning after the numpy classifier GEMM (0.3 % of the work) slowed its encoder by
# about 20 %.
BLAS_THREADS = {"ctranslate2": 1}
EXIT_PACKAGES_MISSING = 3
REQUEST_KEYS = ("precisions", "threads", "seconds_per_cell", "min_repetitions", "max_repetitions", "cells", "check")


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", required=True, choices=sorted(PEER_MODULES))
    parser.add_argument("--model", required=True, help="halfserve frozen .safetensors file")
    parser.add_argument("--request", required=True, help="REQUEST.json: precisions, threads, timing rule, inputs")
    parser.add_argument("--output", required=True, help="RESULT.json to write")
    return parser.parse_args()


def read_request(path):
    with open(path, encoding="utf-8") as f:
        request = json.load(f)
    absent = [key for key in REQUEST_KEYS if key not in request]
    if absent:
        raise ValueError("%s lacks %s" % (path, ", ".join(absent)))
    if int(request["threads"]) < 1:
        raise ValueError("%s: threads must be at least 1" % path)
    return request


def limit_library_threads(threads, blas_threads):
    # OpenMP and BLAS pools size themselves when the library loads, so this must happen before numpy or any
    # framework is imported; each framework's own thread setting comes on top.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(blas_threads)


def packages_missing(name, error):
    print("run_peer: the %s peer's packages are missing in %s: %s" % (name, sys.executable, error), file=sys.stderr)
    sys.exit(EXIT_PACKAGES_MISSING)


def import_peer(name):
    """The peer's module; exits 3 when its framework (or numpy, which every peer needs) is not installed. Each
    module turns its framework's ImportError into PeerPackagesMissing, so a broken import of our own still fails
    loudly instead of reading as a missing package."""
    try:
        importlib.import_module("numpy")
    except ImportError as error:
        packages_missing(name, error)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peer_common import PeerPackagesMissing
    try:
        return importlib.import_module(PEER_MODULES[name])
    except PeerPackagesMissing as error:
        packages_missing(name, error)


def batch_arrays(batch):
    import numpy as np
    ids = np.asarray(batch["input_ids"], dtype=np.int64)
    mask = np.asarray(batch["attention_mask"], dtype=np.int64)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise ValueError("input_ids %s and attention_mask %s must be two matrices of one shape"
                         % (ids.shape, mask.shape))
    return ids, mask


def time_cells(runner, precision, request):
    from peer_common import median, progress, time_repeatedly
    cells = []
    for cell in request["cells"]:
        ids, mask = batch_arrays(cell)
        inputs = runner.prepare(ids, mask)
        samples = time_repeatedly(lambda: runner.run(inputs), int(request["min_repetitions"]),
                                  int(request["max_repetitions"]), float(request["seconds_per_cell"]))
        length, batch = int(cell.get("length", ids.shape[1])), int(cell.get("batch", ids.shape[0]))
        progress("%s len %d batch %d: median %.2f ms over %d runs" % (precision, length, batch, median(samples),
                                                                      len(samples)))
        cells.append({"length": length, "batch": batch, "samples_ms": samples})
    return cells


def check_labels(runner, request):
    ids, mask = batch_arrays(request["check"])
    return runner.label_ids(runner.run(runner.prepare(ids, mask))).tolist()


def run_precision(peer, precision, request):
    from peer_common import PrecisionSkipped, progress
    try:
        runner = peer.runner(precision)
    except PrecisionSkipped as skipped:
        progress("%s skipped: %s" % (precision, skipped))
        return {"skipped": str(skipped)}
    progress("%s: %s" % (precision, runner.description))
    return {"description": runner.description, "cells": time_cells(runner, precision, request),
            "check_label_ids": check_labels(runner, request)}


def write_result(path, content):
    """Writes through a temporary file renamed over the target, so a reader never sees half a result; a target
    that exists and is not a regular file (/dev/stdout, a pipe) is written in place, never replaced."""
    if os.path.exists(path) and not os.path.isfile(path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(content, f)
        return
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp", encoding="utf-8") as f:
        json.dump(content, f)
    os.replace(f.name, path)


def main():
    arguments = parse_arguments()
    request = read_request(arguments.request)
    threads = int(request["threads"])
    limit_library_threads(threads, BLAS_THREADS.get(arguments.peer, threads))
    peer_module = import_peer(arguments.peer)
    from frozen_model import read_frozen_model
    from peer_common import progress

    model = read_frozen_model(arguments.model)
    result = {"peer": arguments.peer, "versions": {"python": platform.python_version(), **peer_module.versions()},
              "precisions": {}}
    with tempfile.TemporaryDirectory(prefix="halfserve-peer-") as workdir:
        peer = peer_module.open_peer(model, threads, workdir)
        device = request.get("device", "cpu")
        off_device = None
        if device != "cpu":
            if hasattr(peer, "use_device"):
                try:
                    peer.use_device(device)
                except Exception as error:  # PrecisionSkipped: no such device for this peer
                    off_device = str(error)
            else:
                off_device = "the %s peer runs on the CPU only" % arguments.peer
        for precision in request["precisions"]:
            if off_device:
                result["precisions"][precision] = {"skipped": off_device}
                continue
            try:
                result["precisions"][precision] = run_precision(peer, precision, request)
            except Exception as error:  # one precision failing should not lose the others' timings
                traceback.print_exc()
                result["precisions"][precision] = {"skipped": "failed: %s: %s" % (type(error).__name__, error)}
            gc.collect()  # the previous precision's model goes before the next one is built
    write_result(arguments.output, result)
    progress("wrote %s" % arguments.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
