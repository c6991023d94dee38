#!/usr/bin/env bash
# The bench's peers (tools/halfserve/peers/run_peer.py): every peer framework runs a tiny synthetic model on the same
# inputs as `halfserve predict` and must give its labels. PyTorch, ONNX Runtime, OpenVINO and CTranslate2 come from
# the peers venv, TensorFlow from the tf venv (scripts/python-env.sh); a peer whose venv cannot be created from PyPI
# is left out with a message, and the test is skipped (77) when neither can; under CI each must install.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh

# Prints the group's python, or nothing when PyPI cannot provide it (a failure under CI); any other failure fails
# the test.
environment() {
  local python status=0
  if strict_prerequisites; then
    python_env "$1"
    return
  fi
  python=$(bash scripts/python-env.sh "$1") || status=$?
  if [ "$status" -eq 77 ]; then
    echo "note: the $1 environment could not be created (no PyPI access?); its peers are left out" >&2
    return 0
  fi
  [ "$status" -eq 0 ] || { echo "scripts/python-env.sh $1 failed (exit $status)" >&2; return "$status"; }
  echo "$python"
}
peers_python=$(environment peers) || exit $?
tf_python=$(environment tf) || exit $?
if [ -z "$peers_python" ] && [ -z "$tf_python" ]; then
  missing_prerequisite "neither the peers nor the tf Python environment could be created from PyPI"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The checker itself needs only the standard library; Debian's python3 runs it.
/usr/bin/python3 tests/python/check_peers.py "$halfserve" "$work" \
  --peers-python "$peers_python" --tf-python "$tf_python"
