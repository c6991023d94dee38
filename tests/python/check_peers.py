"""The bench's peers against halfserve: builds a tiny synthetic model, asks every peer (tools/halfserve/peers/run_peer.py)
to time two cells and label a ragged check batch, checks RESULT.json's shape, and compares the labels with
`halfserve predict` on the same ids and mask: equal in fp32, at least 95 % equal in reduced precisions (on the
unpadded positions; padded ones are the peer's business). Also checks the "packages missing" exit code.

Usage: check_peers.py HALFSERVE WORK_DIR --peers-python PYTHON --tf-python PYTHON
(an empty python leaves that environment's peers out)
"""
import argparse
import dataclasses
import json
import os
import random
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_PEER = os.path.join(ROOT, "tools", "halfserve", "peers", "run_peer.py")
ENVIRONMENT_OF = {"torch": "peers", "onnxruntime": "peers", "openvino": "peers", "ctranslate2": "peers",
                  "tensorflow": "tf"}
# What must run on any x86 CPU; other precisions may be skipped (with a reason) where the hardware lacks them.
MUST_RUN = {"torch": {"fp32", "bf16"}, "onnxruntime": {"fp32", "int8"}, "openvino": {"fp32"},
            "ctranslate2": {"fp32", "int8"}, "tensorflow": {"fp32"}}
PRECISIONS = ["fp32", "bf16", "fp16", "int8"]
SHAPE = {"layers": 1, "hidden": 64, "heads": 4, "ffn": 128, "positions": 64}
VOCAB_SIZE = 21128  # halfserve synth's default vocabulary
REDUCED_AGREEMENT = 0.95
EXIT_PACKAGES_MISSING = 3


def run_halfserve(halfserve, *args, stdin=None):
    result = subprocess.run([halfserve, *args], input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit("halfserve %s failed (exit %d):\n%s" % (args[0], result.returncode, result.stderr))
    return result.stdout


def random_batch(rng, batch, length, row_lengths=None):
    """Random ids; a mask of ones then zeros per row (zeros as ids where padded), full rows by default."""
    row_lengths = row_lengths or [length] * batch
    ids = [[rng.randrange(VOCAB_SIZE) if t < n else 0 for t in range(length)] for n in row_lengths]
    mask = [[1 if t < n else 0 for t in range(length)] for n in row_lengths]
    return {"length": length, "batch": batch, "input_ids": ids, "attention_mask": mask}


def make_request(precisions):
    rng = random.Random(20261126)
    return {"precisions": precisions, "threads": 2, "seconds_per_cell": 0.05, "min_repetitions": 2,
            "max_repetitions": 5, "cells": [random_batch(rng, 1, 16), random_batch(rng, 4, 32)],
            "check": random_batch(rng, 4, 24, row_lengths=[24, 17, 6, 1])}


def with_tanh_gelu(source, target):
    """A copy of a frozen file whose architecture says gelu_tanh: the same weights, the other activation branch of
    every peer. Only the header changes; tensor offsets are relative to the data area, so they stay valid."""
    with open(source, "rb") as f:
        content = f.read()
    (length,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8:8 + length])
    architecture = json.loads(header["__metadata__"]["halfserve.architecture"])
    architecture["activation"] = "gelu_tanh"
    header["__metadata__"]["halfserve.architecture"] = json.dumps(architecture)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-(8 + len(encoded)) % 64)  # keep the data area 64-byte aligned, as halfserve writes it
    with open(target, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + content[8 + length:])


def halfserve_labels(halfserve, model, check):
    body = json.dumps({"inputs": {"input_ids": check["input_ids"], "attention_mask": check["attention_mask"]}})
    reply = json.loads(run_halfserve(halfserve, "predict", "--model", model, "--output", "label_ids",
                                     "--threads", "2", stdin=body))
    outputs = reply["outputs"]
    # TF Serving's column form: a single requested output is the value itself, not a map of names.
    return outputs["label_ids"] if isinstance(outputs, dict) else outputs


def median(values):
    ordered = sorted(values)
    return (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2


def unpadded_agreement(labels, reference, mask):
    pairs = [(labels[r][t], reference[r][t]) for r, row in enumerate(mask) for t, real in enumerate(row) if real]
    return sum(a == b for a, b in pairs) / len(pairs)


def schema_problems(result, peer, request, num_labels):
    """Everything wrong with RESULT.json's shape, as messages (none when it is right)."""
    problems = []
    if result.get("peer") != peer:
        problems.append("peer is %r" % result.get("peer"))
    versions = result.get("versions")
    if not isinstance(versions, dict) or not versions or not all(isinstance(v, str) for v in versions.values()):
        problems.append("versions is not a non-empty map of strings: %r" % versions)
    precisions = result.get("precisions", {})
    if sorted(precisions) != sorted(request["precisions"]):
        problems.append("precisions %s, asked for %s" % (sorted(precisions), sorted(request["precisions"])))
    check_shape = (request["check"]["batch"], request["check"]["length"])
    for precision, body in precisions.items():
        where = "%s: " % precision
        if "skipped" in body:
            if not isinstance(body["skipped"], str) or not body["skipped"]:
                problems.append(where + "skipped without a reason")
            continue
        if not isinstance(body.get("description"), str) or not body["description"]:
            problems.append(where + "no description")
        cells = body.get("cells", [])
        shapes = [(c.get("length"), c.get("batch")) for c in cells]
        if shapes != [(c["length"], c["batch"]) for c in request["cells"]]:
            problems.append(where + "cells %s do not follow the request's" % shapes)
        for cell in cells:
            samples = cell.get("samples_ms", [])
            if not request["min_repetitions"] <= len(samples) <= request["max_repetitions"] or \
                    not all(isinstance(s, (int, float)) and s > 0 for s in samples):
                problems.append(where + "len %s batch %s: bad samples_ms %r"
                                % (cell.get("length"), cell.get("batch"), samples))
        labels = body.get("check_label_ids", [])
        if (len(labels), len(labels[0]) if labels else 0) != check_shape or \
                not all(isinstance(v, int) and 0 <= v < num_labels for row in labels for v in row):
            problems.append(where + "check_label_ids is not a %dx%d matrix of label ids" % check_shape)
    return problems


def run_peer(python, peer, model, request_path, output):
    return subprocess.run([python, RUN_PEER, "--peer", peer, "--model", model, "--request", request_path,
                           "--output", output], capture_output=True, text=True)


@dataclasses.dataclass
class Case:
    """One model and request, with halfserve's own fp32 labels for its check batch."""
    name: str
    model: str
    request: dict
    request_path: str
    reference: list
    num_labels: int


def make_case(halfserve, name, model, precisions, work):
    request = make_request(precisions)
    request_path = os.path.join(work, "request-%s.json" % os.path.basename(model))
    with open(request_path, "w", encoding="utf-8") as f:
        json.dump(request, f)
    num_labels = len(json.loads(run_halfserve(halfserve, "inspect", model, "--json"))["labels"])
    return Case(name, model, request, request_path, halfserve_labels(halfserve, model, request["check"]), num_labels)


def label_failures(peer, result, case):
    """Prints what each precision did and returns its failures: a precision every CPU has that was skipped, or
    labels too far from halfserve's."""
    failures = []
    mask = case.request["check"]["attention_mask"]
    for precision, body in result.get("precisions", {}).items():
        if "skipped" in body:
            print("  %-5s skipped: %s" % (precision, body["skipped"]))
            if precision in MUST_RUN[peer]:
                failures.append("%s was skipped: %s" % (precision, body["skipped"]))
            continue
        if "check_label_ids" not in body:
            continue
        agreement = unpadded_agreement(body["check_label_ids"], case.reference, mask)
        medians = ", ".join("len %d batch %d %.2f ms" % (c["length"], c["batch"], median(c["samples_ms"]))
                            for c in body.get("cells", []))
        print("  %-5s labels %.1f %% equal to halfserve fp32; %s\n        %s"
              % (precision, 100 * agreement, medians, body["description"]))
        needed = 1.0 if precision == "fp32" else REDUCED_AGREEMENT
        if agreement < needed:
            failures.append("%s labels agree with halfserve on %.1f %% of positions, needs %.0f %%"
                            % (precision, 100 * agreement, 100 * needed))
    return failures


def check_peer(python, peer, case, work):
    """Runs one peer on one case and returns its failures (empty when it passes)."""
    output = os.path.join(work, "result-%s-%s.json" % (peer, os.path.basename(case.model)))
    completed = run_peer(python, peer, case.model, case.request_path, output)
    if completed.returncode != 0:
        return ["exit %d:\n%s" % (completed.returncode, completed.stderr[-4000:])]
    with open(output, encoding="utf-8") as f:
        result = json.load(f)
    versions = ", ".join("%s %s" % item for item in sorted(result.get("versions", {}).items()))
    print("%s on %s (%s)" % (peer, case.name, versions))
    return schema_problems(result, peer, case.request, case.num_labels) + label_failures(peer, result, case)


def check_missing_packages_exit(pythons, case, work):
    """A peer run in an environment without its framework must exit 3, not crash."""
    crossed = [(pythons["peers"], "tensorflow"), (pythons["tf"], "torch")]
    failures = []
    for python, peer in crossed:
        if not python:
            continue
        completed = run_peer(python, peer, case.model, case.request_path, os.path.join(work, "missing.json"))
        if completed.returncode != EXIT_PACKAGES_MISSING:
            failures.append("%s in %s: exit %d, expected %d\n%s" % (peer, python, completed.returncode,
                                                                      EXIT_PACKAGES_MISSING, completed.stderr[-2000:]))
    return failures


def make_cases(halfserve, work):
    """The synthetic model in fp32 with erf GELU in every precision, and its bf16 file relabelled gelu_tanh in fp32
    (bf16 weights widened by the peers' reader, the other GELU in every peer)."""
    model = os.path.join(work, "m.safetensors")
    shape = [argument for key, value in SHAPE.items() for argument in ("--" + key, str(value))]
    run_halfserve(halfserve, "synth", "-o", model, *shape)
    bf16 = os.path.join(work, "m-bf16.safetensors")
    run_halfserve(halfserve, "convert", model, "-o", bf16, "--precision", "bf16")
    tanh = os.path.join(work, "m-bf16-tanh.safetensors")
    with_tanh_gelu(bf16, tanh)
    return [make_case(halfserve, "fp32 file, gelu_erf", model, PRECISIONS, work),
            make_case(halfserve, "bf16 file, gelu_tanh", tanh, ["fp32"], work)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("halfserve")
    parser.add_argument("work")
    parser.add_argument("--peers-python", default="")
    parser.add_argument("--tf-python", default="")
    arguments = parser.parse_args()
    pythons = {"peers": arguments.peers_python, "tf": arguments.tf_python}

    cases = make_cases(arguments.halfserve, arguments.work)
    failures = {}
    for peer, environment in ENVIRONMENT_OF.items():
        if not pythons[environment]:
            print("%s: left out (no %s environment)" % (peer, environment))
            continue
        for case in cases:
            failures["%s on %s" % (peer, case.name)] = check_peer(pythons[environment], peer, case, arguments.work)
    failures["missing packages"] = check_missing_packages_exit(pythons, cases[0], arguments.work)
    failed = {name: problems for name, problems in failures.items() if problems}
    for name, problems in failed.items():
        print("FAILED %s:\n  %s" % (name, "\n  ".join(problems)))
    if not failed:
        print("all peers agree with halfserve")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
