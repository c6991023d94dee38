#!/usr/bin/env bash
# The seed's case, written by TensorFlow itself: builds a TF1-style BERT with a whichPun head (SavedModel with
# signature ac_forward, checkpoint, frozen GraphDef), converts all three with halfserve (no TensorFlow involved)
# and checks halfserve's outputs against TensorFlow's. Skipped (77) when TensorFlow cannot be installed, failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
python=$(python_env tf) || exit $?
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" tests/python/make_tf_seed_models.py "$work/tf" 2> "$work/tf.log" || { cat "$work/tf.log"; exit 1; }
"$python" tests/python/check_tf_seed_import.py "$halfserve" "$work/tf"
