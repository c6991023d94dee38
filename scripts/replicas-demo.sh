#!/usr/bin/env bash
# Scale-out on one machine: two `halfserve serve` replicas of the shipped Chinese model behind haproxy (Debian 12's),
# which health-checks each one's /readyz and retries a request on the other replica when one is gone.
#  1. throughput through the load balancer with one replica (the other disabled in haproxy) and with two, alternated
#     for --rounds rounds (halfserve bench --target over REST), and gRPC through haproxy's HTTP/2 frontend once;
#  2. under load (scripts/replicas/load.py, every request's result written down): replica 1 stopped as Kubernetes
#     stops a pod (SIGTERM) and restarted; then replica 2 killed (SIGKILL) and restarted.
#   bash scripts/replicas-demo.sh [--bench-seconds 15] [--rounds 2] [--clients 8] [--phase-seconds 30]
#                                 [--threads N] [--output out/replicas-demo.json] [--keep]
# About 2¼ minutes with the defaults. Localhost only; every process it starts is ended on exit. Prints a markdown
# summary and writes the JSON one to --output. Needs haproxy (bash scripts/install-deps.sh --test).
# docs/deploy.md ("Scale-out on one machine") records a run.
set -euo pipefail
export LC_ALL=C  # EPOCHREALTIME and awk with a '.' decimal point
cd "$(dirname "$0")/.."

bench_seconds=15 rounds=2 clients=8 phase_seconds=30 threads="" output=out/replicas-demo.json keep=false
usage() { sed -n 2,12p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bench-seconds|--rounds|--clients|--phase-seconds|--threads|--output)
      [ $# -ge 2 ] || { echo "replicas-demo: $1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    --bench-seconds) bench_seconds=${2:-}; shift 2 ;;
    --rounds) rounds=${2:-}; shift 2 ;;
    --clients) clients=${2:-}; shift 2 ;;
    --phase-seconds) phase_seconds=${2:-}; shift 2 ;;
    --threads) threads=${2:-}; shift 2 ;;
    --output) output=${2:-}; shift 2 ;;
    --keep) keep=true; shift ;;
    -h|--help) usage ;;
    *) echo "replicas-demo: unknown argument '$1'" >&2; usage ;;
  esac
done
positive() {  # NAME VALUE [MINIMUM]
  if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt "${3:-1}" ]; then
    echo "replicas-demo: $1 must be a whole number of at least ${3:-1}, got '$2'" >&2
    exit 2
  fi
}
positive --bench-seconds "$bench_seconds"
positive --rounds "$rounds"
positive --clients "$clients"
positive --phase-seconds "$phase_seconds" 12
[ -z "$threads" ] || positive --threads "$threads"
[ -n "$output" ] || { echo "replicas-demo: --output needs a file name" >&2; exit 2; }

command -v haproxy >/dev/null || { echo "replicas-demo: needs haproxy: bash scripts/install-deps.sh --test" >&2; exit 1; }
command -v curl >/dev/null || { echo "replicas-demo: needs curl: bash scripts/install-deps.sh --test" >&2; exit 1; }
halfserve=build/tools/halfserve/halfserve
[ -x "$halfserve" ] || bash scripts/build.sh >&2
python=/usr/bin/python3
control=(scripts/replicas/control.py)

work=$(mktemp -d /tmp/halfserve-replicas.XXXXXX)
replica_pids=("" "" "")  # index 1 and 2
haproxy_pid="" client_pid=""
# Ends what this script started (each by its own pid), then removes the temporary folder.
cleanup() {
  local status=$? pid pids=() alive
  for pid in "${replica_pids[@]}" "$haproxy_pid" "$client_pid"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for _ in $(seq 50); do  # 5 s for a clean exit, then SIGKILL
    alive=false
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=true; done
    [ "$alive" = true ] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [ "$keep" = true ] || [ "$status" -ne 0 ]; then echo "replicas-demo: files kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "replicas-demo: $*" >&2; }
# Wall-clock seconds, the clock load.py stamps requests with.
event() { echo "$EPOCHREALTIME $2${3:+ $3}" >> "$1"; }
sleep_until() {  # START OFFSET: sleeps until START + OFFSET seconds
  sleep "$(awk -v start="$1" -v offset="$2" -v now="$EPOCHREALTIME" \
    'BEGIN { r = start + offset - now; printf "%.3f", (r > 0 ? r : 0) }')"
}

# ---- replicas and the load balancer ----

read -r lb_rest_port lb_grpc_port rest_port_1 rest_port_2 grpc_port_1 grpc_port_2 < <("$python" "${control[@]}" free-ports 6)
rest_ports=("" "$rest_port_1" "$rest_port_2")
grpc_ports=("" "$grpc_port_1" "$grpc_port_2")
mkdir -p "$work/models/punct/1"
cp models/punct-zh-int8.safetensors "$work/models/punct/1/model.safetensors"
# Replicas restart from this copy: the same binary all run long, even if build/ is rebuilt meanwhile.
cp "$halfserve" "$work/halfserve"
halfserve=$work/halfserve
thread_flags=()
[ -z "$threads" ] || thread_flags=(--threads "$threads")

start_replica() {  # INDEX
  "$halfserve" serve --model_name punct --model_base_path "$work/models/punct" --enable_batching \
    --rest_api_host 127.0.0.1 --rest_api_port "${rest_ports[$1]}" --grpc_host 127.0.0.1 --port "${grpc_ports[$1]}" \
    --file_system_poll_wait_seconds 0 --drain_seconds 10 "${thread_flags[@]}" >> "$work/replica$1.log" 2>&1 &
  replica_pids[$1]=$!
}
wait_ready() {  # INDEX: until the replica's own /readyz answers 200 (60 s at most)
  local deadline=$((SECONDS + 60))
  until curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:${rest_ports[$1]}/readyz"; do
    if ! kill -0 "${replica_pids[$1]}" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      tail -n 20 "$work/replica$1.log" >&2
      log "replica $1 did not become ready"
      exit 1
    fi
    sleep 0.05
  done
}
lb() { "$python" "${control[@]}" command "$work/haproxy.sock" "$1" > /dev/null; }
wait_lb() { "$python" "${control[@]}" wait "$work/haproxy.sock" "rest_replicas/r$1" "$2" --timeout 30; }

cat /proc/loadavg > "$work/loadavg-start"
start_replica 1
start_replica 2
wait_ready 1
wait_ready 2
sed -e "s#@WORK@#$work#; s/@LB_REST_PORT@/$lb_rest_port/; s/@LB_GRPC_PORT@/$lb_grpc_port/" \
    -e "s/@REST_PORT_1@/$rest_port_1/; s/@REST_PORT_2@/$rest_port_2/" \
    -e "s/@GRPC_PORT_1@/$grpc_port_1/; s/@GRPC_PORT_2@/$grpc_port_2/" scripts/replicas/haproxy.cfg.in > "$work/haproxy.cfg"
haproxy -c -q -f "$work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 &
haproxy_pid=$!
for _ in $(seq 100); do [ -S "$work/haproxy.sock" ] && break; sleep 0.05; done
wait_lb 1 UP
wait_lb 2 UP
log "replicas on REST ports $rest_port_1 and $rest_port_2 (gRPC $grpc_port_1, $grpc_port_2);" \
    "haproxy on $lb_rest_port (REST), $lb_grpc_port (gRPC)"

# ---- throughput: one replica and two, alternated ----

cpu_snapshot() { "$python" "${control[@]}" cpu-snapshot "${replica_pids[1]}" "${replica_pids[2]}" "$haproxy_pid"; }
bench() {  # NAME URL SECONDS: halfserve bench's concurrency sweep at --clients, batch 1, 64 tokens
  local status=0
  cpu_snapshot > "$work/cpu-$1.jsonl"
  "$halfserve" bench --target "$2" --model-name punct --lengths 64 --batches 1 --min-reps 1 --max-reps 1 \
    --seconds-per-cell 0 --concurrency "$clients" --sweep-seconds "$3" --sweep-length 64 \
    --output "$work/bench-$1.md" 2>> "$work/bench.log" &
  client_pid=$!
  wait "$client_pid" || status=$?
  client_pid=""
  cpu_snapshot >> "$work/cpu-$1.jsonl"
  [ -f "$work/bench-$1.md" ] || { tail -n 5 "$work/bench.log" >&2; log "bench $1 wrote no report (exit $status)"; exit 1; }
}
for round in $(seq "$rounds"); do
  lb "disable server rest_replicas/r2"
  wait_lb 2 MAINT
  log "round $round: one replica, $bench_seconds s"
  bench "one-$round" "http://127.0.0.1:$lb_rest_port" "$bench_seconds"
  lb "enable server rest_replicas/r2"
  wait_lb 2 UP
  log "round $round: two replicas, $bench_seconds s"
  bench "two-$round" "http://127.0.0.1:$lb_rest_port" "$bench_seconds"
done
log "gRPC through haproxy, two replicas, 5 s"
bench grpc "grpc://127.0.0.1:$lb_grpc_port" 5

# ---- a replica stopped under load, then restarted ----

kill_at=$((phase_seconds / 4)) restart_at=$((phase_seconds / 2))
stop_under_load() {  # PHASE SIGNAL INDEX
  local events="$work/events-$1.txt" start status=0
  log "$1: $phase_seconds s of load; replica $3 gets SIG$2 at ${kill_at} s and is restarted at ${restart_at} s"
  start=$EPOCHREALTIME
  event "$events" start
  "$python" scripts/replicas/load.py --url "http://127.0.0.1:$lb_rest_port" --clients "$clients" \
    --seconds "$phase_seconds" --id-prefix "$1" --records "$work/records-$1.csv" &
  client_pid=$!
  sleep_until "$start" "$kill_at"
  event "$events" kill "r$3"
  kill -"$2" "${replica_pids[$3]}"
  { wait "${replica_pids[$3]}"; } 2>/dev/null || status=$?  # no "Killed" line from bash
  replica_pids[$3]=""
  event "$events" exited "$status"
  sleep_until "$start" "$restart_at"
  event "$events" restart "r$3"
  start_replica "$3"
  wait_ready "$3"
  event "$events" ready "r$3"
  wait_lb "$3" UP
  event "$events" lb-up "r$3"
  status=0
  wait "$client_pid" || status=$?
  client_pid=""
  event "$events" end
  [ "$status" -eq 0 ] || { log "the load client failed (exit $status)"; exit 1; }
}
stop_under_load sigterm TERM 1
stop_under_load sigkill KILL 2

# ---- summary ----

mkdir -p "$(dirname "$output")"
"$python" scripts/replicas/summary.py --work "$work" --clients "$clients" --bench-seconds "$bench_seconds" \
  --phase-seconds "$phase_seconds" --threads "${threads:-default}" --output "$output"
log "JSON summary in $output"
