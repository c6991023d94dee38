#!/usr/bin/env bash
# The Kubernetes and KServe manifests (deploy/k8s, deploy/kserve): rendered, validated against the Kubernetes
# schemas (kubernetes-validate, strict) and the vendored CRD schemas, cross-checked, and their container command run
# against the real binary. Needs the `deploy` venv (PyPI): skipped (77) without it, failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
python=$(python_env deploy) || exit $?
exec timeout 240 "$python" tests/deploy/check_manifests.py "$halfserve"
