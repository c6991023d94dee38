#!/usr/bin/env bash
# Creates, once, the Python virtual environment that tests and benchmarks use for real peers and references
# (PyPI packages; the product itself never needs Python). Prints the environment's python on stdout.
#   scripts/python-env.sh GROUP...    groups: tf (tensorflow-cpu)
# Exits 77 when the packages cannot be installed (no PyPI access), so callers can skip with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HALFSERVE_VENV:-$PWD/.venv}

declare -A packages=(
  [tf]="tensorflow-cpu>=2.15,<3"
)

if ! /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  else
    echo "python-env: Debian's python3-venv is missing (apt-get install python3-venv)" >&2
    exit 77
  fi
fi
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv" >&2

for group in "$@"; do
  spec=${packages[$group]:?unknown group $group}
  stamp="$venv/.installed-$group"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$spec" ]; then
    echo "python-env: installing $spec into $venv" >&2
    # shellcheck disable=SC2086
    if ! "$venv/bin/pip" install -q --disable-pip-version-check $spec >&2; then
      echo "python-env: could not install $spec (no PyPI access?)" >&2
      exit 77
    fi
    echo "$spec" > "$stamp"
  fi
done
echo "$venv/bin/python"
