#!/usr/bin/env python3
"""The shipped punctuation models, scored on their held-out text (made by train/extract_text.py, never trained on)
with `halfserve eval --precisions fp32,fp16,bf16,int8`:
- each model keeps its held-out micro F1 over the marks issue 14's targets name (`，。？`, `,.?`) above a floor, in
  fp32 (the file's weights dequantized) and in int8 (what `punctuate` runs): the target itself for English (0.70);
  for Chinese, which meets its 0.60 by a fraction of a point on the machine it was measured on (docs/accuracy.md),
  0.58, so that a regression in the tokenizer, the engine or the file fails here and another CPU's last-digit
  differences do not;
- fp16 and bf16 stay within 0.2 F1 points of fp32 and int8 within 0.5, with token labels agreeing with fp32 on at
  least 99.5 % (fp16, bf16) and 99 % (int8) of tokens, all measured here, on this CPU;
- a plain sentence of each language gets its obvious marks from `halfserve punctuate --language`.

    check_shipped_models.py HALFSERVE TEXT_DIR   (TEXT_DIR/{zh,en}/test.txt)
"""
import json
import pathlib
import subprocess
import sys

from harness import Checks

F1_FLOOR = {"zh": 0.58, "en": 0.70}
TARGET_MARKS = {"zh": "，。？", "en": ",.?"}
MAX_F1_DROP = {"fp16": 0.002, "bf16": 0.002, "int8": 0.005}
MIN_AGREEMENT = {"fp16": 0.995, "bf16": 0.995, "int8": 0.99}
# Plain sentences in the style of each model's text, and marks any reader puts there (the rest is not checked: the
# Chinese model misses many marks, docs/accuracy.md).
OBVIOUS = {
    "zh": [("如果你想安装这个软件包请使用下面的命令", ["软件包，", "命令。"]), ("你知道这个软件包是谁维护的吗", ["吗？"])],
    "en": [("the server was restarted last night but the logs show no errors so we do not know what happened",
            ["The server", "night,", "errors,", "happened."])],
}


def run(command, stdin=""):
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def check_language(halfserve, language, text_dir, checks):
    reference = text_dir / language / "test.txt"
    report = json.loads(run([halfserve, "eval", "--language", language, "--ref", str(reference),
                             "--precisions", "fp32,fp16,bf16,int8", "--micro-marks", TARGET_MARKS[language],
                             "--json"]))
    fp32 = report["results"][0]
    print(f"{language}: {report['lines']} held-out paragraphs, {fp32['words']} words")
    for result in report["results"]:
        name = result["precision"]
        if name in ("fp32", "int8"):
            target_f1 = result["micro_marks"]["f1"]
            checks.require(target_f1 >= F1_FLOOR[language],
                           f"{language} {name} micro F1 over {TARGET_MARKS[language]} {target_f1:.4f} < {F1_FLOOR[language]}")
        drop = -result["f1_minus_fp32"]
        agreement = result["token_label_agreement_with_fp32"]
        print(f"  {name}: micro F1 {result['micro']['f1']:.4f} ({result['f1_minus_fp32']:+.4f}; "
              f"{TARGET_MARKS[language]} {result['micro_marks']['f1']:.4f}), "
              f"labels agree with fp32 on {100 * agreement:.2f} % of tokens")
        if name == "fp32":
            continue
        checks.require(drop <= MAX_F1_DROP[name],
                       f"{language} {name} F1 is {drop:.4f} below fp32 (at most {MAX_F1_DROP[name]})")
        checks.require(agreement >= MIN_AGREEMENT[name], f"{language} {name} agrees with fp32 on {agreement:.4f} "
                       f"of tokens (at least {MIN_AGREEMENT[name]})")
    sentences = [sentence for sentence, _ in OBVIOUS[language]]
    outputs = run([halfserve, "punctuate", "--language", language], "\n".join(sentences) + "\n").splitlines()
    checks.expect(f"{language} punctuate line count", len(outputs), len(sentences))
    for (sentence, marks), punctuated in zip(OBVIOUS[language], outputs):
        print(f"  {sentence} -> {punctuated}")
        for mark in marks:
            checks.require(mark in punctuated, f"{language}: expected '{mark}' in '{punctuated}'")


def main():
    halfserve, text_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    checks = Checks()
    for language in ("zh", "en"):
        check_language(halfserve, language, text_dir, checks)
    checks.finish()


if __name__ == "__main__":
    main()
