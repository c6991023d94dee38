#!/usr/bin/env bash
# halfserve serve's Open Inference Protocol (REST and gRPC) through tritonclient[http,grpc] from PyPI (the triton
# venv). Skipped (77) when the package cannot be installed, failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
python=$(python_env triton) || exit $?
"$python" tests/deploy/check_triton_client.py "$halfserve"
