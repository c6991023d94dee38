#!/usr/bin/env bash
# `halfserve tokenize` against transformers' BertTokenizer (the slow Python one) on thousands of random texts per
# vocabulary (shared/fixtures/vocab). Exit 77 (skipped) when transformers cannot be installed or the fixtures
# are missing.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
vocab_dir=${HALFSERVE_FIXTURES:-$PWD/../shared/fixtures}/vocab
if [ ! -f "$vocab_dir/bert-base-chinese-vocab.txt" ] || [ ! -f "$vocab_dir/bert-base-uncased-vocab.txt" ]; then
  echo "SKIPPED: $vocab_dir has no BERT vocabularies"
  exit 77
fi
python=$(bash scripts/python-env.sh hf) || { echo "SKIPPED: transformers could not be installed from PyPI"; exit 77; }
"$python" tests/python/check_tokenizer_parity.py "$halfserve" "$vocab_dir" "${@:2}"
