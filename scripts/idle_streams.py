"""Idle WebSocket streams against `halfserve serve` (issue 18: 10 000 idle streams): how many are taken, how the rest
are refused, what the server holds and burns while they sit there, whether :punctuate still answers, and whether a
new stream opens once they close. Localhost only; the shipped Chinese model; standard library only.
  /usr/bin/python3 scripts/idle_streams.py [COUNT (default 10000)]
"""
import base64, json, os, resource, shutil, socket, subprocess, sys, tempfile, time, urllib.request
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = ROOT + "/build/tools/halfserve/halfserve"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, N + 2048), hard))
work = tempfile.mkdtemp()
os.makedirs(work + "/punct/1")
shutil.copy(ROOT + "/models/punct-zh-int8.safetensors", work + "/punct/1/model.safetensors")
port = int(os.environ.get("HALFSERVE_IDLE_PORT", "8790"))
server = subprocess.Popen([BINARY, "serve", "--port", "0", "--rest_api_port", str(port), "--rest_api_host", "127.0.0.1",
                           "--model_name", "punct", "--model_base_path", work + "/punct", "--enable_batching",
                           "--file_system_poll_wait_seconds", "0"], stdout=subprocess.DEVNULL, stderr=open(work + "/log", "w"))
def rss():
    for line in open(f"/proc/{server.pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
def cpu():
    f = open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", port)); s.close(); break
    except OSError: time.sleep(0.2)
time.sleep(2)
def upgrade():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/models/punct:stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk: break
        head += chunk
    return s, head.split(b"\r\n", 1)[0].decode(errors="replace"), head
rss0 = rss()
sockets, statuses, refusal = [], {}, None
t0 = time.time()
for i in range(N):
    try:
        s, status, head = upgrade()
    except OSError as e:
        status = "error " + str(e)
        s = None
    statuses[status] = statuses.get(status, 0) + 1
    if s is not None and " 101 " in status + " ": sockets.append(s)
    elif s is not None:
        if refusal is None: refusal = head.decode(errors="replace")[-300:]
        s.close()
open_seconds = time.time() - t0
time.sleep(2)
c0 = cpu(); time.sleep(10); idle_cpu = (cpu() - c0) / 10 * 100
rss1 = rss()
# A fresh request still works while the streams sit idle (the stream cap is full, so punctuate over HTTP).
t = time.time()
reply = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/punct:punctuate",
        data=json.dumps({"text": "今天天气很好我们去公园玩吧"}).encode()), timeout=30).read().decode()
punct_ms = (time.time() - t) * 1000
for s in sockets: s.close()
time.sleep(2)
s, status_after, _ = upgrade()
s.close()
print(json.dumps({"attempted": N, "statuses": statuses, "open_seconds": round(open_seconds, 1),
                  "first_refusal_tail": refusal, "rss_mb_before": round(rss0, 1), "rss_mb_with_streams": round(rss1, 1),
                  "idle_cpu_percent_of_a_core": round(idle_cpu, 2), "punctuate_while_full": reply, "punctuate_ms": round(punct_ms, 1),
                  "new_stream_after_close": status_after, "server_alive": server.poll() is None}, ensure_ascii=False, indent=1))
server.terminate(); server.wait(30)
shutil.rmtree(work)
