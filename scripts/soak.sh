#!/usr/bin/env bash
# Abuse and soak of `halfserve serve` on localhost: slowloris and idle connections, maximum bodies, a 64-client
# soak with invalid requests, the served file overwritten and truncated (scripts/soak.py says what each step does).
#   bash scripts/soak.sh [--minutes 10] [--clients 64] [--slow 2000] [--idle 1000] [--bodies 20]
# Builds halfserve if needed; prints one JSON document. docs/reliability.md records a run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/tools/halfserve/halfserve ] || bash scripts/build.sh >&2
exec /usr/bin/python3 scripts/soak.py "$@"
