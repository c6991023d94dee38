#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, in one call: build halfserve with the CUDA backend (or, where the machine lacks
# halfserve's Debian build packages, use the binaries packed by scripts/gpu-bundle.sh and carried in
# .gpu-bundle/), run every test that needs the device (backend ops and whole models on cuda against the references
# and PyTorch's fixture outputs), and time the seed grid on the GPU (fp32 with TF32 off, fp16, bf16), with PyTorch
# on the same GPU as a peer when python3 has a CUDA PyTorch and transformers (and ONNX Runtime where installed).
# Results go to $OUT (the device tool's folder) or out/gpu: gpu.txt, tests.log, bench.md, bench-ragged.md, logs.
#
#   bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/gpu}"
mkdir -p "$out"
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt" ||
  { echo "gpu-check: nvidia-smi found no GPU" >&2; exit 1; }
{ lscpu | grep -m1 'Model name'; echo "cores: $(nproc)"; date -u; } >> "$out/gpu.txt"

if cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DHALFSERVE_WITH_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-80;90}" \
     > "$out/configure.log" 2>&1 && grep -q "CUDA backend on" "$out/configure.log"; then
  cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
  cli=build-gpu/tools/halfserve/halfserve
  tests=build-gpu/tests/halfserve_tests
elif [ -f .gpu-bundle/halfserve-gpu.tar.xz ]; then
  echo "gpu-check: no CUDA build possible here (see configure.log); using the carried .gpu-bundle" | tee -a "$out/gpu.txt"
  bundle=/tmp/halfserve-gpu
  rm -rf "$bundle" && mkdir -p "$bundle" && tar -C "$bundle" -xJf .gpu-bundle/halfserve-gpu.tar.xz
  # cuBLASLt 13 from the machine: the CUDA toolkit, or the nvidia-cublas wheel PyTorch brings.
  cublas=$(ldconfig -p | awk '/libcublasLt\.so\.13/ {print $NF; exit}')
  [ -n "$cublas" ] || cublas=$(find /usr/local/cuda*/ /usr/lib /opt / -xdev -name 'libcublasLt.so.13*' 2>/dev/null | head -1)
  [ -n "$cublas" ] || { echo "gpu-check: libcublasLt.so.13 not found on this machine" >&2; exit 1; }
  cudart=$(find "$(dirname "$cublas")" /usr/local/cuda*/ / -xdev -name 'libcudart.so.13*' 2>/dev/null | head -1)
  export LD_LIBRARY_PATH="$bundle/lib:$(dirname "$cublas"):$(dirname "${cudart:-$cublas}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export HALFSERVE_FIXTURES="$bundle/fixtures"
  cli="$bundle/bin/halfserve"
  tests="$bundle/bin/halfserve_tests"
else
  tail -30 "$out/configure.log"
  echo "gpu-check: cannot build with CUDA here and no .gpu-bundle was carried (bash scripts/gpu-bundle.sh)" >&2
  exit 1
fi
export HALFSERVE_SOURCE_DIR="$PWD"  # the bench's Python peers live in the source tree

# Every test parameterised over devices; on a GPU machine a skipped CUDA case is a failure.
"$tests" --gtest_filter='*BackendOpsTest*:*BertModelOnDevice*:BackendTest.*' 2>&1 | tee "$out/tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if grep -E '^\[  SKIPPED \].*cuda' "$out/tests.log"; then
  echo "gpu-check: CUDA tests were skipped on a machine with a GPU" >&2
  status=1
fi

model=out/default-fp32.safetensors
mkdir -p out
[ -f "$model" ] || "$cli" synth -o "$model"
peers=()
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2> /dev/null; then
  export HALFSERVE_PEER_PYTHON="$(command -v python3)"  # no venv: the device machine has no PyPI
  peers=(--peer torch)
  # ONNX Runtime joins where it is installed; it says itself when its build has no CUDA execution provider.
  python3 -c 'import onnxruntime, onnx' 2> /dev/null && peers=(--peer torch,onnxruntime)
else
  echo "gpu-check: python3 has no CUDA PyTorch with transformers: no PyTorch or ONNX Runtime peer" | tee -a "$out/gpu.txt"
fi
"$cli" bench --model "$model" --device cuda --precisions fp32,fp16,bf16 --peer gemm "${peers[@]}" \
  --output "$out/bench.md" 2>&1 | tee "$out/bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
"$cli" bench --model "$model" --device cuda --precisions fp16 --ragged --output "$out/bench-ragged.md" > "$out/bench-ragged.log" 2>&1 ||
  status=1
exit "$status"
