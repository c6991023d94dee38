#!/usr/bin/env bash
# halfserve serve's gRPC API through TF Serving's own Python client (pip tensorflow-serving-api in the tf venv):
# Predict with int32 and int64 ids, GetModelMetadata, GetModelStatus and TF Serving's error codes; Predict's logits
# must match `halfserve predict`. Skipped (77) when the packages cannot be installed, failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
python=$(python_env serving) || exit $?
"$python" tests/python/check_grpc_client.py "$halfserve"
