"""What every peer shares: how a peer says a precision cannot run, what a runnable precision looks like, and the
timing loop — the same rule as halfserve's own grid (src/bench/latency_grid.cc), so ratios compare like with like.
"""
import dataclasses
import os
import sys
import time
from typing import Any, Callable

import numpy as np


class PrecisionSkipped(Exception):
    """The peer cannot run this precision on this machine; the message says why (it goes into RESULT.json)."""


class PeerPackagesMissing(Exception):
    """The peer's framework is not installed in this Python (run_peer.py exits 3)."""


@dataclasses.dataclass
class Runner:
    """One peer in one precision, ready to run.

    prepare turns int64 numpy ids and mask into what the framework takes (untimed, like halfserve's InputBatch);
    run computes the logits from that (timed); label_ids turns run's result into argmax labels (untimed).
    """
    description: str
    prepare: Callable[[np.ndarray, np.ndarray], Any]
    run: Callable[[Any], Any]
    label_ids: Callable[[Any], np.ndarray]


def progress(message):
    print("peer: " + message, file=sys.stderr, flush=True)


def time_repeatedly(run_once, min_repetitions, max_repetitions, seconds_per_cell):
    """Milliseconds per run after one untimed warm-up: at least min_repetitions runs and at least
    seconds_per_cell of timing, at most max_repetitions."""
    run_once()
    samples, spent = [], 0.0
    while len(samples) < max_repetitions and (len(samples) < min_repetitions or spent < seconds_per_cell):
        start = time.perf_counter()
        run_once()
        seconds = time.perf_counter() - start
        samples.append(seconds * 1e3)
        spent += seconds
    return samples


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def argmax_labels(logits):
    return np.asarray(logits, dtype=np.float32).argmax(axis=-1).astype(np.int64)


# Fragments of a loaded library's path -> the BLAS it is.
_BLAS_NAMES = (("/libopenblas", "OpenBLAS"), ("/libmkl_", "MKL"), ("/libblis", "BLIS"), ("atlas.so", "ATLAS"),
               ("/blas/libblas.so", "the reference BLAS (netlib libblas3)"))


def system_blas(used_for):
    """Names the BLAS loaded into this process (None when none is recognised), warning when it is the reference
    one: Debian's torch and numpy call whichever libblas.so.3 the system's alternatives select, and with only
    libblas3 installed that is the unoptimized netlib BLAS, tens of times slower than OpenBLAS. The kernel's map
    of the process names the files the loader really opened, symlinks resolved."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            files = {line.split()[-1].lower() for line in maps if os.sep in line}
    except OSError:
        return None
    for fragment, name in _BLAS_NAMES:
        if any(fragment in path for path in files):
            if "reference" in name:
                # The OpenMP build of OpenBLAS shares torch's OpenMP threads; the pthread one competes with them.
                progress("warning: %s run on %s; apt-get install libopenblas0-openmp for a fair comparison"
                         % (used_for, name))
            return name
    return None
