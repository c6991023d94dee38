#!/usr/bin/env bash
# `halfserve tokenize` against transformers' BertTokenizer (the slow Python one) on thousands of random texts per
# vocabulary (shared/fixtures/vocab). Skipped (77) when transformers cannot be installed or the fixtures are
# missing; failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
vocab_dir=${HALFSERVE_FIXTURES:-$PWD/../shared/fixtures}/vocab
if [ ! -f "$vocab_dir/bert-base-chinese-vocab.txt" ] || [ ! -f "$vocab_dir/bert-base-uncased-vocab.txt" ]; then
  missing_prerequisite "$vocab_dir has no BERT vocabularies"
fi
python=$(python_env hf) || exit $?
"$python" tests/python/check_tokenizer_parity.py "$halfserve" "$vocab_dir" "${@:2}"
