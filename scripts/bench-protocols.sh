#!/usr/bin/env bash
# The v2 protocol's overhead against TF Serving's, on one `halfserve serve` of the default model (seed architecture):
# `halfserve bench --target` at batch 1, length 64, one client on one connection, over TF Serving REST (:predict),
# v2 REST (/infer, JSON tensors), TF Serving gRPC (Predict) and v2 gRPC (ModelInfer), alternated for ROUNDS rounds in
# one sitting so the machine's drift hits every protocol alike. Prints each round's medians and, per protocol, the
# median of the rounds and its ratio to TF Serving's path over the same transport.
#   bash scripts/bench-protocols.sh [ROUNDS (default 5)]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
halfserve=build/tools/halfserve/halfserve
[ -x "$halfserve" ] || bash scripts/build.sh >&2
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

[ -f out/default-fp32.safetensors ] || { mkdir -p out; "$halfserve" synth -o out/default-fp32.safetensors >&2; }
mkdir -p "$work/base/1"
ln -s "$PWD/out/default-fp32.safetensors" "$work/base/1/model.safetensors"
"$halfserve" serve --port 8710 --rest_api_port 8711 --rest_api_host 127.0.0.1 --grpc_host 127.0.0.1 --model_name seed \
  --model_base_path "$work/base" --file_system_poll_wait_seconds 0 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 150); do curl -sf localhost:8711/readyz > /dev/null && break; sleep 0.2; done
curl -sf localhost:8711/readyz > /dev/null || { cat "$work/server.log" >&2; exit 1; }

targets=(http://127.0.0.1:8711 v2+http://127.0.0.1:8711 grpc://127.0.0.1:8710 v2+grpc://127.0.0.1:8710)
for round in $(seq "$rounds"); do
  for target in "${targets[@]}"; do
    "$halfserve" bench --target "$target" --model-name seed --lengths 64 --batches 1 --concurrency 1 \
      --sweep-seconds 0 2>/dev/null | sed -n 's/^| len 64 | \([0-9.]*\)ms |$/\1/p' | sed "s|^|$round $target |"
  done
done > "$work/medians.txt"
/usr/bin/python3 - "$work/medians.txt" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
by_target = {}
for _, target, ms in rows:
    by_target.setdefault(target.split("://")[0], []).append(float(ms))
print("| protocol | medians per round (ms) | median of rounds | vs TF Serving's |")
print("|---|---|---|---|")
base = {"http": "http", "v2+http": "http", "grpc": "grpc", "v2+grpc": "grpc"}
for scheme, values in by_target.items():
    median = statistics.median(values)
    ratio = median / statistics.median(by_target[base[scheme]])
    print(f"| {scheme} | {' '.join(f'{v:.3f}' for v in values)} | {median:.3f} | {ratio:.3f}x |")
PY
