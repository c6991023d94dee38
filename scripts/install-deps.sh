#!/usr/bin/env bash
# Installs the Debian 12 packages halfserve builds with (and, with --test, what its tests use). Idempotent: does
# nothing when all are present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libdnnl-dev ocl-icd-opencl-dev nlohmann-json3-dev libcli11-dev libutf8proc-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc libleveldb-dev libsnappy-dev libzip-dev libcpp-httplib-dev libmicrohttpd-dev zlib1g-dev nettle-dev
  libgtest-dev libgmock-dev
  python3-venv
)
# The tests and the bench also compare against real peers: PyTorch (Debian's) runs transformers' reference BERT,
# on OpenBLAS (the OpenMP build: the pthread one fights torch's threads) rather than the reference BLAS, which would
# make PyTorch fp32 a hundred times slower than it is for users.
# The fuzz tests build with clang 14 and its libFuzzer runtime (scripts/fuzz.sh); OpenMP for clang is libomp.
# The container image test builds deploy/Containerfile with buildah on a base root made by mmdebstrap.
# haproxy: the load balancer in front of two replicas in scripts/replicas-demo.sh.
# The web page's test drives headless Chromium with Selenium (tests/web/).
if [ "${1:-}" = "--test" ]; then
  packages+=(python3-torch python3-numpy python3-requests curl wrk libopenblas0-openmp clang-14 libclang-rt-14-dev libomp-14-dev
             buildah mmdebstrap haproxy chromium chromium-driver python3-selenium)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (or install the packages above yourself)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# dpkg's per-package lines go to a log, shown only when something fails.
log=$(mktemp /tmp/install-deps.XXXXXX.log)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } > "$log" 2>&1; then
  tail -n 60 "$log" >&2
  echo "install-deps: apt-get failed (whole log: $log)" >&2
  exit 1
fi
rm -f "$log"
echo "install-deps: installed ${#missing[@]} packages and their dependencies"
