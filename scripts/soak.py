#!/usr/bin/env python3
"""Abuse and soak test of `halfserve serve` on localhost (issue 15's figures, docs/reliability.md).

Starts the server on the shipped Chinese model (a copy), then runs, each bounded in time:
  1. quiet:     one client's :punctuate and :predict latency (median, p99) with nothing else going on;
  2. abuse:     SLOW slowloris connections (a header line every 10 s, never finishing) and IDLE silent
                keep-alive connections held open; the same client's latency again, and the server's CPU while the
                connections sit there and nobody sends a request;
  3. bodies:    BODIES concurrent requests of the maximum body size (valid JSON), then a normal request;
  4. soak:      CLIENTS clients for MINUTES, a fifth of their requests invalid (bad JSON, ids outside the
                vocabulary, unknown models, oversized rows); valid failures, invalid answers' p99, RSS over time;
  5. files:     during load, the served version's file is overwritten with another model and then truncated;
                failed requests are counted.
Only the standard library; prints one JSON document (and progress on stderr).
  python3 scripts/soak.py [--minutes 10] [--clients 64] [--slow 2000] [--idle 1000] [--bodies 20]
"""
import argparse, http.client, json, multiprocessing, os, random, resource, shutil, signal, socket, statistics, subprocess, sys
import tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "build", "tools", "halfserve", "halfserve")
MODEL = os.path.join(ROOT, "models", "punct-zh-int8.safetensors")
OTHER_MODEL = os.path.join(ROOT, "models", "punct-en-int8.safetensors")
TEXT = "如果你想安装这个软件包请使用下面的命令安装完成以后就可以运行它了"


def log(message):
    print(f"soak: {message}", file=sys.stderr, flush=True)


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(latencies):
    return {"n": len(latencies), "median_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
            "p99_ms": round(1000 * percentile(latencies, 0.99), 2) if latencies else None}


class Server:
    def __init__(self, work, max_body):
        self.base = os.path.join(work, "punct")
        os.makedirs(os.path.join(self.base, "1"))
        self.model_file = os.path.join(self.base, "1", "model.safetensors")
        shutil.copy(MODEL, self.model_file)
        self.port = free_port()
        self.process = subprocess.Popen(
            [BINARY, "serve", "--port", "0", "--rest_api_port", str(self.port), "--rest_api_host", "127.0.0.1",
             "--model_name", "punct", "--model_base_path", self.base, "--enable_batching",
             "--file_system_poll_wait_seconds", "0", "--max_request_bytes", str(max_body)],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if request(self.port, "GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def rss_mb(self, field="VmRSS"):
        # VmRSS: resident now; VmHWM: the most it has ever been.
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def threads(self):
        return len(os.listdir(f"/proc/{self.process.pid}/task"))

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=60, connection=None):
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        if own:
            connection.close()


def valid_requests():
    ids = [101] + [random.randrange(670, 8000) for _ in range(30)] + [102]
    return [("/v1/models/punct:punctuate", json.dumps({"text": TEXT})),
            ("/v1/models/punct:predict", json.dumps({"inputs": {"input_ids": [ids]}}))]


def invalid_requests():
    return [("/v1/models/punct:predict", '{"inputs": [[1, 2'),
            ("/v1/models/punct:predict", json.dumps({"inputs": {"input_ids": [[101, 99999999, 102]]}})),
            ("/v1/models/nope:predict", json.dumps({"inputs": [[101, 102]]})),
            ("/v1/models/punct:predict", json.dumps({"inputs": {"input_ids": [[101] * 5000]}})),
            ("/v1/models/punct:punctuate", json.dumps({"text": TEXT, "stride": 1}))]


VALID_REQUESTS, INVALID_REQUESTS = valid_requests(), invalid_requests()  # encoded once, not per request


def measure_latency(port, seconds):
    latencies, failures = [], 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    end = time.time() + seconds
    while time.time() < end:
        for path, body in VALID_REQUESTS:
            start = time.perf_counter()
            try:
                status, _ = request(port, "POST", path, body, connection=connection)
            except OSError:
                status = 0
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies.append(time.perf_counter() - start)
            failures += status != 200
    return {**summary(latencies), "failures": failures}


def open_abusive_connections(port, slow, idle):
    sockets = []
    for i in range(slow + idle):
        s = socket.create_connection(("127.0.0.1", port))
        if i < slow:
            s.sendall(b"POST /v1/models/punct:predict HTTP/1.1\r\nHost: x\r\n")
        sockets.append(s)
    return sockets


def drip(sockets, slow, stop):
    # A header line every 10 s on each slowloris connection, forever.
    while not stop.wait(10):
        for s in sockets[:slow]:
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                pass


def maximum_bodies(port, count, max_body):
    # Valid JSON of the maximum size: a long list of ids, padded with spaces to the limit.
    body = json.dumps({"inputs": {"input_ids": [[101] + [700] * 254 + [102]]}})  # the model's 256 positions
    body = body + " " * (max_body - len(body))
    results = []
    def one():
        try:
            results.append(request(port, "POST", "/v1/models/punct:predict", body, timeout=300)[0])
        except OSError as error:
            results.append(str(error))
    threads = [threading.Thread(target=one) for _ in range(count)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def soak_client(port, seed, seconds, results):
    # One client in its own process: 64 threads in one interpreter would queue behind its lock (a 5 ms switch
    # interval), and that wait, not the server's, would be inside every latency measured.
    rng = random.Random(seed)
    valid, invalid = VALID_REQUESTS, INVALID_REQUESTS
    failures, valid_latencies, invalid_latencies, invalid_statuses = [], [], [], {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    end = time.time() + seconds
    while time.time() < end:
        is_invalid = rng.random() < 0.2
        path, body = rng.choice(invalid if is_invalid else valid)
        start = time.perf_counter()
        try:
            status, reply = request(port, "POST", path, body, connection=connection)
        except OSError as error:
            status, reply = 0, str(error).encode()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        elapsed = time.perf_counter() - start
        if is_invalid:
            invalid_latencies.append(elapsed)
            invalid_statuses[status] = invalid_statuses.get(status, 0) + 1
        elif status == 200:
            valid_latencies.append(elapsed)
        else:
            failures.append(f"{status} {reply[:200]!r}")
    results.put(((len(failures), failures[:3]), valid_latencies, invalid_latencies, invalid_statuses))


def soak(server, clients, seconds, file_events):
    results = multiprocessing.get_context("fork").Queue()
    processes = [multiprocessing.get_context("fork").Process(
                     target=soak_client, args=(server.port, i, seconds, results)) for i in range(clients)]
    [p.start() for p in processes]
    rss, start, events = [], time.time(), sorted(file_events)
    while time.time() - start < seconds:
        time.sleep(min(5, seconds))
        rss.append(round(server.rss_mb(), 1))
        while events and time.time() - start >= events[0][0] * seconds:
            events.pop(0)[1]()
    failed, first_failures, valid_latencies, invalid_latencies, invalid_statuses = 0, [], [], [], {}
    for _ in processes:
        failures, valid, invalid, statuses = results.get(timeout=300)
        failed += failures[0]
        first_failures += failures[1][:3 - len(first_failures)]
        valid_latencies += valid
        invalid_latencies += invalid
        for status, count in statuses.items():
            invalid_statuses[status] = invalid_statuses.get(status, 0) + count
    [p.join() for p in processes]
    settled = rss[len(rss) // 5:] or rss  # after the first fifth: caches and arenas filled
    return {"clients": clients, "seconds": seconds, "valid": summary(valid_latencies),
            "valid_failures": failed, "first_failures": first_failures,
            "invalid": summary(invalid_latencies), "invalid_statuses": invalid_statuses,
            "rss_mb": {"samples": rss, "settled_min": min(settled), "settled_max": max(settled),
                       "settled_spread_percent": round(100 * (max(settled) - min(settled)) / min(settled), 1)}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--bodies", type=int, default=20)
    parser.add_argument("--max-body", type=int, default=64 << 20)
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, options.slow + options.idle + 1024)), hard))
    result = {}
    with tempfile.TemporaryDirectory(prefix="halfserve-soak-") as work:
        server = Server(work, options.max_body)
        try:
            log("quiet latency")
            request(server.port, "POST", *valid_requests()[0])  # warm-up
            result["quiet"] = measure_latency(server.port, 20)
            result["threads_quiet"] = server.threads()
            log(f"{options.slow} slowloris + {options.idle} idle connections")
            sockets = open_abusive_connections(server.port, options.slow, options.idle)
            stop_drip = threading.Event()
            dripper = threading.Thread(target=drip, args=(sockets, options.slow, stop_drip))
            dripper.start()
            cpu_before = server.cpu_seconds()
            time.sleep(20)
            result["abuse"] = {"connections": len(sockets), "threads": server.threads(),
                               "idle_cpu_percent_of_a_core": round(100 * (server.cpu_seconds() - cpu_before) / 20, 2),
                               "latency": measure_latency(server.port, 20)}
            stop_drip.set()
            dripper.join()
            for s in sockets:
                s.close()
            log(f"{options.bodies} concurrent maximum bodies ({options.max_body} bytes)")
            rss_before = server.rss_mb()  # the peak so far came from the steps before; it only grows from here
            statuses = maximum_bodies(server.port, options.bodies, options.max_body)
            result["bodies"] = {"count": options.bodies, "bytes": options.max_body, "statuses": statuses,
                                "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(server.rss_mb(), 1),
                                "peak_rss_mb": round(server.rss_mb("VmHWM"), 1),
                                "server_alive": server.alive(),
                                "after": request(server.port, "POST", *valid_requests()[1])[0]}
            log(f"soak: {options.clients} clients, {options.minutes} min, 20 % invalid; file overwritten then truncated")
            def overwrite():
                shutil.copyfile(OTHER_MODEL, server.model_file)
                log("overwrote the served file")
            def truncate():
                os.truncate(server.model_file, 100)
                log("truncated the served file")
            result["soak"] = soak(server, options.clients, options.minutes * 60, [(0.4, overwrite), (0.6, truncate)])
            result["server_alive_at_end"] = server.alive()
        finally:
            server.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
