#!/usr/bin/env bash
# Serving overhead and throughput on the default model (seed architecture), on this machine:
#   1. in-process `halfserve bench` medians at batch 1 and 32 (length 64);
#   2. REST (wrk, one connection) and gRPC (the real TF Serving Python client, one channel) median latency for the
#      same requests against `halfserve serve`;
#   3. throughput with 64 concurrent batch-1 REST clients (wrk -c64), batching off and on.
# Prints markdown; results go to docs/benchmarks.md by hand with the date and machine. Needs wrk and the `serving`
# Python environment (scripts/python-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
halfserve=build/tools/halfserve/halfserve
precision=${PRECISION:-fp32}
length=64
seconds=${SECONDS_PER_RUN:-10}
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

[ -f out/default-fp32.safetensors ] || { mkdir -p out; "$halfserve" synth -o out/default-fp32.safetensors >&2; }
mkdir -p "$work/base/1"
ln -s "$PWD/out/default-fp32.safetensors" "$work/base/1/model.safetensors"
python=$(bash scripts/python-env.sh serving)

request() {  # request BATCH -> column-form JSON of BATCH rows of LENGTH ids
  "$python" -c "import json,sys; b=int(sys.argv[1]); print(json.dumps({'inputs': {'input_ids': [[(7*i+13*j)%21000+100 for j in range($length)] for i in range(b)]}}))" "$1"
}
for batch in 1 32; do request $batch > "$work/batch$batch.json"; done
for batch in 1 32; do
  printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nlocal f = io.open("%s", "r")\nwrk.body = f:read("*a")\nf:close()\n' \
    "$work/batch$batch.json" > "$work/batch$batch.lua"
done

start_server() {  # start_server [--enable_batching]
  "$halfserve" serve --port 8700 --rest_api_port 8701 --model_name seed --model_base_path "$work/base" \
    --precision "$precision" --file_system_poll_wait_seconds 0 "$@" 2> "$work/server.log" &
  server_pid=$!
  for _ in $(seq 100); do curl -sf localhost:8701/readyz > /dev/null && return; sleep 0.2; done
  cat "$work/server.log" >&2; exit 1
}
stop_server() { kill "$server_pid"; wait "$server_pid" || true; server_pid=""; }
wrk_median_ms() {  # wrk_median_ms CONNECTIONS THREADS LUA -> "median_ms requests_per_second p99_ms"
  wrk -t"$2" -c"$1" -d"${seconds}s" --latency -s "$3" http://127.0.0.1:8701/v1/models/seed:predict |
    awk '/^ +50%/ {m=$2} /^ +99%/ {p=$2} /Requests\/sec/ {r=$2}
         function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
         END { printf "%.2f %.1f %.2f\n", ms(m), r, ms(p) }'
}

echo "## Serving overhead ($precision, length $length, $(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores)"
echo
read -r in1 in32 <<< "$("$halfserve" bench --model out/default-fp32.safetensors --precisions "$precision" --lengths $length \
  --batches 1,32 2>/dev/null | awk -F'|' '/frozen, len/ {gsub(/[ ms]/, "", $3); gsub(/[ ms]/, "", $4); print $3, $4}')"
start_server
read -r rest1 _ _ <<< "$(wrk_median_ms 1 1 "$work/batch1.lua")"
read -r rest32 _ _ <<< "$(wrk_median_ms 1 1 "$work/batch32.lua")"
grpc=$("$python" tests/python/grpc_latency.py 127.0.0.1:8700 seed "$work/batch1.json" "$work/batch32.json" 2>/dev/null)
read -r grpc1 grpc32 <<< "$grpc"
echo "| path | batch 1 median | batch 32 median |"
echo "|---|---|---|"
echo "| in-process (halfserve bench) | ${in1} ms | ${in32} ms |"
echo "| REST :predict (wrk, 1 connection) | ${rest1} ms | ${rest32} ms |"
echo "| gRPC Predict (TF Serving Python client) | ${grpc1} ms | ${grpc32} ms |"
echo
read -r off_median off_rps off_p99 <<< "$(wrk_median_ms 64 2 "$work/batch1.lua")"
stop_server
start_server --enable_batching
read -r on_median on_rps on_p99 <<< "$(wrk_median_ms 64 2 "$work/batch1.lua")"
stop_server
echo "64 concurrent batch-1 REST clients (wrk -t2 -c64, ${seconds} s):"
echo
echo "| batching | requests/s | median | p99 |"
echo "|---|---|---|---|"
echo "| off | ${off_rps} | ${off_median} ms | ${off_p99} ms |"
echo "| on (max_batch_size 32, timeout 1 ms) | ${on_rps} | ${on_median} ms | ${on_p99} ms |"
