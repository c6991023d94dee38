#!/usr/bin/env bash
# The web page at / in headless Chromium (tests/web/check_web_page.py): Debian's chromium, chromium-driver and
# python3-selenium (scripts/install-deps.sh --test). Skipped (77) without them, failed under CI.
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  if [ ! -x "$tool" ]; then
    missing_prerequisite "$tool is not installed (apt-get install chromium chromium-driver)"
  fi
done
if ! /usr/bin/python3 -c "import selenium" 2>/dev/null; then
  missing_prerequisite "Python selenium is not installed (apt-get install python3-selenium)"
fi
if [ ! -f models/punct-zh-int8.safetensors ]; then
  missing_prerequisite "models/punct-zh-int8.safetensors is not in the checkout"
fi
timeout 600 /usr/bin/python3 tests/web/check_web_page.py "$halfserve" "$PWD"
