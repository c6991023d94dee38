#!/usr/bin/env bash
# halfserve serve's REST API through curl and Python requests: status, metadata, predict (byte for byte what
# `halfserve predict` prints), punctuate, metrics, errors. Python comes from the hf venv (which sees Debian's
# python3-requests), or Debian's own python3 when that venv cannot be built; exit 77 (skipped) without curl or
# requests.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
subcommands=$("$halfserve" --help)
if ! grep -q '^  serve ' <<<"$subcommands"; then
  echo "SKIPPED: $halfserve has no serve subcommand"
  exit 77
fi
if ! command -v curl >/dev/null; then
  echo "SKIPPED: curl is not installed (apt-get install curl)"
  exit 77
fi
python=$(bash scripts/python-env.sh hf 2>/dev/null) || python=/usr/bin/python3
if ! "$python" -c "import requests" 2>/dev/null; then
  echo "SKIPPED: Python requests is not installed (apt-get install python3-requests)"
  exit 77
fi
"$python" tests/python/check_rest_client.py "$halfserve"
