#!/usr/bin/env bash
# train/train.py's labels and windows (check_train_labels.py) with the fixtures' BERT vocabularies, in the hf
# Python environment (transformers, Debian's PyTorch). Skipped (77) without them; failed under CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
vocab_dir=${HALFSERVE_FIXTURES:-$PWD/../shared/fixtures}/vocab
if [ ! -f "$vocab_dir/bert-base-chinese-vocab.txt" ] || [ ! -f "$vocab_dir/bert-base-uncased-vocab.txt" ]; then
  missing_prerequisite "$vocab_dir has no BERT vocabularies"
fi
python=$(python_env hf) || exit $?
"$python" tests/python/check_train_labels.py "$vocab_dir"
