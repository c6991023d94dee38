#!/usr/bin/env bash
# halfserve serve's gRPC API through TF Serving's own Python client (pip tensorflow-serving-api in the tf venv):
# Predict with int32 and int64 ids, GetModelMetadata, GetModelStatus and TF Serving's error codes; Predict's logits
# must match `halfserve predict`. Exit 77 (skipped) when the packages cannot be installed.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
python=$(bash scripts/python-env.sh serving) || {
  status=$?
  [ "$status" -eq 77 ] && echo "SKIPPED: tensorflow-cpu or tensorflow-serving-api could not be installed from PyPI"
  exit "$status"
}
"$python" tests/python/check_grpc_client.py "$halfserve"
