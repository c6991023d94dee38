#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, in one call: build halfserve with the CUDA backend, run every test that needs the
# device (backend ops and whole models on cuda against the references), and time the seed grid on the GPU
# (fp32 with TF32 off, fp16, bf16), with PyTorch on the same GPU when python3 has a CUDA PyTorch and transformers.
# Results go to $OUT (the device tool's folder) or out/gpu: gpu.txt, tests.log, bench.md, bench-ragged.md, logs.
#
#   bash scripts/gpu-check.sh            # build-gpu/ is created or reused
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/gpu}"
mkdir -p "$out"
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt" ||
  { echo "gpu-check: nvidia-smi found no GPU" >&2; exit 1; }
{ lscpu | grep -m1 'Model name'; nproc; date -u; } >> "$out/gpu.txt"

# The build needs halfserve's Debian packages (scripts/install-deps.sh): present on a Debian 12 machine after that
# script; a device image without them needs them carried in (dpkg -x into a prefix on CMAKE_PREFIX_PATH).
if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DHALFSERVE_WITH_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-80;90}" \
     > "$out/configure.log" 2>&1; then
  tail -30 "$out/configure.log"
  echo "gpu-check: configure failed (missing build dependencies? see scripts/install-deps.sh)" >&2
  exit 1
fi
grep -q "CUDA backend on" "$out/configure.log" || { echo "gpu-check: nvcc not found: the CUDA backend was not built" >&2; exit 1; }
cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }

# Every test parameterised over devices, with the CUDA cases required to run (a skip here means the GPU was not seen).
build-gpu/tests/halfserve_tests --gtest_filter='*BackendOpsTest*:*BertModelOnDevice*:BackendTest.*:CudaServing*' 2>&1 | tee "$out/tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if grep -E '^\[  SKIPPED \].*cuda' "$out/tests.log"; then
  echo "gpu-check: CUDA tests were skipped on a machine with a GPU" >&2
  status=1
fi

cli=build-gpu/tools/halfserve/halfserve
mkdir -p out
[ -f out/default-fp32.safetensors ] || "$cli" synth -o out/default-fp32.safetensors
# PyTorch fp16/fp32/bf16 eager on the same GPU joins as a peer when the machine's python3 has CUDA PyTorch and
# transformers (no venv: the device machine has no PyPI).
peers=()
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2> /dev/null; then
  export HALFSERVE_PEER_PYTHON="$(command -v python3)"
  peers=(--peer torch)
else
  echo "gpu-check: python3 has no CUDA PyTorch with transformers: no PyTorch peer" | tee -a "$out/gpu.txt"
fi
"$cli" bench --model out/default-fp32.safetensors --device cuda --precisions fp32,fp16,bf16 "${peers[@]}" \
  --output "$out/bench.md" 2>&1 | tee "$out/bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
"$cli" bench --model out/default-fp32.safetensors --device cuda --precisions fp16 --ragged \
  --output "$out/bench-ragged.md" 2>&1 | tail -3
exit "$status"
