#!/usr/bin/env bash
# README command two: installs what it needs, builds, and runs every test. Tests that need ../shared/fixtures
# or a GPU skip with a message when those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 600 -j "$(nproc)" "$@"
