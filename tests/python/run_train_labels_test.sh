#!/usr/bin/env bash
# train/train.py's labels and windows (check_train_labels.py) with the fixtures' BERT vocabularies, in the hf
# Python environment (transformers, Debian's PyTorch). Skipped (77) without them; failed under CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
vocab_dir=$(bert_vocabularies) || exit $?
python=$(python_env hf) || exit $?
"$python" tests/python/check_train_labels.py "$vocab_dir"
