#!/usr/bin/env bash
# Creates, once, the Python virtual environment that tests and benchmarks use for real peers and references
# (PyPI packages; the product itself never needs Python). Prints the environment's python on stdout.
#   scripts/python-env.sh GROUP
#     tf  tensorflow-cpu, in a plain venv (.venv/tf)
#     hf  transformers, in a venv that also sees Debian's python3-torch and python3-numpy (.venv/hf)
# Each group has its own venv so that one group's pins never fight another's (TensorFlow's numpy vs Debian's);
# they live under $HALFSERVE_VENV (default .venv).
# Exits 77 when the packages cannot be installed (no PyPI access), so callers can skip with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
venv_root=${HALFSERVE_VENV:-$PWD/.venv}

declare -A packages=(
  [tf]="tensorflow-cpu>=2.15,<3"
  [hf]="transformers>=4.30,<4.45"
)
declare -A venv_flags=(
  [tf]=""
  [hf]="--system-site-packages"
)

if [ $# -ne 1 ]; then
  echo "usage: scripts/python-env.sh GROUP   (groups: ${!packages[*]})" >&2
  exit 2
fi
group=$1
if [ -z "${packages[$group]+set}" ]; then
  echo "python-env: unknown group '$group' (groups: ${!packages[*]})" >&2
  exit 2
fi
spec=${packages[$group]}
flags=${venv_flags[$group]}
venv=$venv_root/$group

if ! /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  else
    echo "python-env: Debian's python3-venv is missing (apt-get install python3-venv)" >&2
    exit 77
  fi
fi

mkdir -p "$venv_root"
# Tests run in parallel under ctest: only one of them may create or fill a group's venv at a time.
exec 9> "$venv_root/.lock-$group"
flock 9

# The flags are part of the stamp: a venv created with other flags is rebuilt rather than reused.
stamp="$venv/.installed"
wanted="$spec ${flags:-(plain)}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  rm -rf "$venv"
  # shellcheck disable=SC2086
  /usr/bin/python3 -m venv $flags "$venv" >&2
  echo "python-env: installing $spec into $venv" >&2
  # shellcheck disable=SC2086
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check $spec >&2; then
    echo "python-env: could not install $spec (no PyPI access?)" >&2
    exit 77
  fi
  echo "$wanted" > "$stamp"
fi
echo "$venv/bin/python"
