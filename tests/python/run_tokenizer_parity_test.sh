#!/usr/bin/env bash
# `halfserve tokenize` against transformers' BertTokenizer (the slow Python one) on thousands of random texts per
# vocabulary (shared/fixtures/vocab). Skipped (77) when transformers cannot be installed or the fixtures are
# missing; failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
vocab_dir=$(bert_vocabularies) || exit $?
python=$(python_env hf) || exit $?
"$python" tests/python/check_tokenizer_parity.py "$halfserve" "$vocab_dir" "${@:2}"
