#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that lacks halfserve's Debian build packages (the device
# machines lent here run their own image, with CUDA and PyTorch but no libdnnl, gRPC, protobuf, ...): the CLI and
# test binaries from a CUDA-enabled build/, the Debian shared libraries they load (not libc/libstdc++, not CUDA's),
# and the fixtures the device tests compare against. Output: .gpu-bundle/ (ignored by git; name it in the device
# tool's `carry`), about 25 MB compressed.
#
#   bash scripts/build.sh && bash scripts/gpu-bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cli=build/tools/halfserve/halfserve
tests=build/tests/halfserve_tests
[ -x "$cli" ] && [ -x "$tests" ] || { echo "gpu-bundle: build first (bash scripts/build.sh)" >&2; exit 1; }
ldd "$cli" | grep libcublasLt > /dev/null || { echo "gpu-bundle: build/ has no CUDA backend (was nvcc found?)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/fixtures"
cp "$cli" "$tests" "$stage/bin/"
# Every shared library the two binaries load, except the C/C++ runtime (the machine's own is newer) and CUDA's
# (the machine's driver and toolkit provide them).
for binary in "$cli" "$tests"; do
  ldd "$binary" | awk '/=> \// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*)\.so|/libcu|/usr/local/cuda' |
  while read -r library; do cp -L "$library" "$stage/lib/"; done
fixtures="${HALFSERVE_FIXTURES:-../shared/fixtures}"
[ -d "$fixtures" ] && cp -r "$fixtures/torch_bert_tokcls" "$fixtures/hf_tiny_bert" "$stage/fixtures/" 2>/dev/null || true

mkdir -p .gpu-bundle
tar -C "$stage" -cJf .gpu-bundle/halfserve-gpu.tar.xz .
ls -la .gpu-bundle/halfserve-gpu.tar.xz
