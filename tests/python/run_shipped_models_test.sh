#!/usr/bin/env bash
# The shipped punctuation models (models/punct-{zh,en}-int8.safetensors, found beside the built binary) on their
# held-out text: train/extract_text.py makes it again from the Debian packages (apt-get download; nothing from the
# packages is run), then check_shipped_models.py scores every precision with `halfserve eval`. Text that cannot be
# downloaded is a missing prerequisite: a skip for a user, a failure under CI.
#   run_shipped_models_test.sh HALFSERVE CACHE_DIR
set -euo pipefail
halfserve=$(realpath "$1")
cache=$2
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
mkdir -p "$cache"
for language in zh en; do
  data=$cache/$language
  if [ ! -s "$data/test.txt" ]; then
    rm -rf "$data.partial"
    log=$cache/extract-$language.log
    /usr/bin/python3 train/extract_text.py "$language" "$data.partial" --debs "$cache/debs" > "$log" 2>&1 || {
      tail -n 20 "$log" >&2
      # Only a package that cannot be downloaded is a missing prerequisite; any other failure is a failure.
      if grep -q "'apt-get', 'download'" "$log"; then
        missing_prerequisite "the $language held-out text could not be made: apt-get download failed"
      fi
      exit 1
    }
    # Only the held-out text is kept: the unpacked packages are hundreds of MB (the .deb files stay in $cache/debs,
    # shared by both languages).
    mkdir -p "$data"
    mv "$data.partial/test.txt" "$data.partial/sources.json" "$data/"
    rm -rf "$data.partial"
  fi
done
/usr/bin/python3 tests/python/check_shipped_models.py "$halfserve" "$cache"
