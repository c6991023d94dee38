#!/usr/bin/env bash
# The seed's case, written by TensorFlow itself: builds a TF1-style BERT with a whichPun head (SavedModel with
# signature ac_forward, checkpoint, frozen GraphDef), converts all three with halfserve (no TensorFlow involved)
# and checks halfserve's outputs against TensorFlow's. Exit 77 (skipped) when TensorFlow cannot be installed.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
python=$(bash scripts/python-env.sh tf) || { echo "SKIPPED: tensorflow-cpu could not be installed from PyPI"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" tests/python/make_tf_seed_models.py "$work/tf" 2> "$work/tf.log" || { cat "$work/tf.log"; exit 1; }
"$python" tests/python/check_tf_seed_import.py "$halfserve" "$work/tf"
