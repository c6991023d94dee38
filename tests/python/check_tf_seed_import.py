"""Converts the TensorFlow-written seed models with halfserve and compares halfserve's outputs with
TensorFlow's (expected.json). Standard library only: TensorFlow is not imported here.

Usage: check_tf_seed_import.py HALFSERVE_BINARY MODELS_DIR
"""
import json
import os
import subprocess
import sys

TOLERANCE = 1e-4


def run(halfserve, *args, stdin=None):
    result = subprocess.run([halfserve, *args], input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit("halfserve %s failed (exit %d):\n%s" % (" ".join(args), result.returncode, result.stderr))
    return result


def worst_error(actual, expected, mask):
    worst = 0.0
    for b, row in enumerate(mask):
        for t, real in enumerate(row):
            if real:
                worst = max(worst, max(abs(x - y) for x, y in zip(actual[b][t], expected[b][t])))
    return worst


def same_labels(actual, expected, mask):
    return all(actual[b][t] == expected[b][t] for b, row in enumerate(mask) for t, real in enumerate(row) if real)


def main(halfserve, models):
    expected = json.load(open(os.path.join(models, "expected.json")))
    ids, mask = expected["input_ids"], expected["attention_mask"]
    labels = os.path.join(models, "labels.txt")
    vocab = os.path.join(models, "checkpoint", "vocab.txt")
    sources = {
        "saved-model": os.path.join(models, "saved_model", "1"),
        "tf-checkpoint": os.path.join(models, "checkpoint", "bert_model.ckpt"),
        "graphdef": os.path.join(models, "frozen.pb"),
    }
    failures = []
    for name, source in sources.items():
        frozen = os.path.join(models, name + ".safetensors")
        run(halfserve, "convert", source, "-o", frozen, "--labels", labels, "--vocab", vocab)
        inspected = json.loads(run(halfserve, "inspect", frozen, "--json").stdout)
        if inspected["provenance"]["source_format"] != name:
            failures.append("%s: detected as %s" % (name, inspected["provenance"]["source_format"]))
        marks = [label["mark"] for label in inspected["labels"]]
        if marks != ["", "，", "。", "？", "！", "、"]:
            failures.append("%s: label marks %s" % (name, marks))

        request = {"inputs": {"input_ids": ids, "attention_mask": mask}}
        outputs = json.loads(run(halfserve, "predict", "--model", frozen, "--output", "logits,label_ids,last_hidden_state",
                                 stdin=json.dumps(request)).stdout)["outputs"]
        logit_error = worst_error(outputs["logits"], expected["logits"], mask)
        hidden_error = worst_error(outputs["last_hidden_state"], expected["last_hidden_state"], mask)
        print("%-13s serving_default: worst logit error %.2e, worst hidden-state error %.2e" % (name, logit_error, hidden_error))
        if logit_error > TOLERANCE or hidden_error > TOLERANCE:
            failures.append("%s: outputs differ from TensorFlow's by more than %g" % (name, TOLERANCE))
        if not same_labels(outputs["label_ids"], expected["label_ids"], mask):
            failures.append("%s: label ids differ from TensorFlow's argmax" % name)

        if name == "saved-model":
            signatures = [s["name"] for s in inspected["signatures"]]
            if "ac_forward" not in signatures:
                failures.append("saved-model: signature ac_forward not carried over (%s)" % signatures)
                continue
            request = {"signature_name": "ac_forward", "inputs": {"input": ids, "mask": mask}}
            outputs = json.loads(run(halfserve, "predict", "--model", frozen, stdin=json.dumps(request)).stdout)["outputs"]
            if sorted(outputs) != ["punc_logits", "punc_output"]:
                failures.append("ac_forward returned %s" % sorted(outputs))
                continue
            error = worst_error(outputs["punc_logits"], expected["logits"], mask)
            print("saved-model   ac_forward {input, mask} -> punc_output, punc_logits: worst logit error %.2e" % error)
            if error > TOLERANCE:
                failures.append("ac_forward punc_logits differ by %g" % error)
            if not same_labels(outputs["punc_output"], expected["label_ids"], mask):
                failures.append("ac_forward punc_output differs from TensorFlow's")
            rows = [{"input": i, "mask": m} for i, m in zip(ids, mask)]
            rowwise = json.loads(run(halfserve, "predict", "--model", frozen,
                                     stdin=json.dumps({"signature_name": "ac_forward", "instances": rows})).stdout)
            if [p["punc_output"] for p in rowwise["predictions"]] != outputs["punc_output"]:
                failures.append("ac_forward row form disagrees with column form")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all TensorFlow formats match TensorFlow within %g" % TOLERANCE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
