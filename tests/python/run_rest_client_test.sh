#!/usr/bin/env bash
# halfserve serve's REST API through curl and Python requests: status, metadata, predict (byte for byte what
# `halfserve predict` prints), punctuate, metrics, errors. Python comes from the hf venv (which sees Debian's
# python3-requests), or Debian's own python3 when that venv cannot be built; skipped (77) without curl or
# requests, failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
subcommands=$("$halfserve" --help)
if ! grep -q '^  serve ' <<<"$subcommands"; then
  missing_prerequisite "$halfserve has no serve subcommand"
fi
if ! command -v curl >/dev/null; then
  missing_prerequisite "curl is not installed (apt-get install curl)"
fi
# Under CI the hf venv must build; elsewhere Debian's python3 (with python3-requests) will do.
if strict_prerequisites; then python=$(python_env hf) || exit $?
else python=$(bash scripts/python-env.sh hf 2>/dev/null) || python=/usr/bin/python3
fi
if ! "$python" -c "import requests" 2>/dev/null; then
  missing_prerequisite "Python requests is not installed (apt-get install python3-requests)"
fi
"$python" tests/python/check_rest_client.py "$halfserve"
