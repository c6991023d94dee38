#!/usr/bin/env python3
"""The shipped punctuation models, scored on their held-out text (made by train/extract_text.py, never trained on)
with `halfserve eval --precisions fp32,fp16,bf16,int8`:
- each model reaches its micro-F1 target (issue 14: en >= 0.70, zh >= 0.60), computed in fp32 from the shipped file;
- fp16 and bf16 stay within 0.2 F1 points of fp32 and int8 within 0.5, with token labels agreeing with fp32 on at
  least 99.5 % (fp16, bf16) and 99 % (int8) of tokens, all measured here, on this CPU;
- a plain sentence of each language gets its obvious marks from `halfserve punctuate --language`.

    check_shipped_models.py HALFSERVE TEXT_DIR   (TEXT_DIR/{zh,en}/test.txt)
"""
import json
import pathlib
import subprocess
import sys

F1_TARGET = {"zh": 0.60, "en": 0.70}
MAX_F1_DROP = {"fp16": 0.002, "bf16": 0.002, "int8": 0.005}
MIN_AGREEMENT = {"fp16": 0.995, "bf16": 0.995, "int8": 0.99}
# Sentences in the style of each model's text, and the marks any reader puts there (the rest is not checked).
OBVIOUS = {
    "zh": ("如果你想安装这个软件包请使用下面的命令", ["软件包，", "命令。"]),
    "en": ("if you want to install this package use the following command it will download the files",
           ["package,", "command.", "files."]),
}


def run(command, stdin=""):
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def check_language(halfserve, language, text_dir):
    failures = []
    reference = text_dir / language / "test.txt"
    report = json.loads(run([halfserve, "eval", "--language", language, "--ref", str(reference),
                             "--precisions", "fp32,fp16,bf16,int8", "--json"]))
    fp32 = report["results"][0]
    print(f"{language}: {report['lines']} held-out paragraphs, {fp32['words']} words")
    if fp32["micro"]["f1"] < F1_TARGET[language]:
        failures.append(f"{language} fp32 micro F1 {fp32['micro']['f1']:.4f} < {F1_TARGET[language]}")
    for result in report["results"]:
        name = result["precision"]
        drop = -result["f1_minus_fp32"]
        agreement = result["token_label_agreement_with_fp32"]
        print(f"  {name}: micro F1 {result['micro']['f1']:.4f} ({result['f1_minus_fp32']:+.4f}), "
              f"labels agree with fp32 on {100 * agreement:.2f} % of tokens")
        if name == "fp32":
            continue
        if drop > MAX_F1_DROP[name]:
            failures.append(f"{language} {name} F1 is {drop:.4f} below fp32 (at most {MAX_F1_DROP[name]})")
        if agreement < MIN_AGREEMENT[name]:
            failures.append(f"{language} {name} agrees with fp32 on {agreement:.4f} of tokens "
                            f"(at least {MIN_AGREEMENT[name]})")
    sentence, marks = OBVIOUS[language]
    punctuated = run([halfserve, "punctuate", "--language", language], sentence + "\n").strip()
    print(f"  {sentence} -> {punctuated}")
    for mark in marks:
        if mark not in punctuated:
            failures.append(f"{language}: expected '{mark}' in '{punctuated}'")
    return failures


def main():
    halfserve, text_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    failures = []
    for language in ("zh", "en"):
        failures += check_language(halfserve, language, text_dir)
    for failure in failures:
        print("FAILED:", failure)
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
