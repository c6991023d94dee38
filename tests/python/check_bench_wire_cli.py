"""`halfserve bench --target` against a `halfserve serve` started here, over REST and gRPC: exit 0, the grid and
sweep tables, and the server's request counter equal to what the bench says it sent. Standard library only.

Usage: check_bench_wire_cli.py HALFSERVE_BINARY
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness import free_port


def ok_requests(rest_port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/monitoring/prometheus/metrics" % rest_port).read().decode()
    match = re.search(r':tensorflow:serving:request_count\{model_name="tiny",status="OK"\} (\d+)', text)
    return int(match.group(1)) if match else 0


def main(halfserve):
    with tempfile.TemporaryDirectory() as work:
        os.makedirs(os.path.join(work, "base", "1"))
        subprocess.run([halfserve, "synth", "-o", os.path.join(work, "base", "1", "model.safetensors"), "--layers", "1",
                        "--hidden", "32", "--heads", "4", "--ffn", "64", "--vocab", "2000", "--positions", "64"],
                       check=True, capture_output=True)
        grpc_port, rest_port = free_port(), free_port()
        server = subprocess.Popen([halfserve, "serve", "--port", str(grpc_port), "--rest_api_port", str(rest_port),
                                   "--model_name", "tiny", "--model_base_path", os.path.join(work, "base"),
                                   "--file_system_poll_wait_seconds", "0"], stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen("http://127.0.0.1:%d/readyz" % rest_port)
                    break
                except OSError:
                    time.sleep(0.1)
            failures = []
            for url in ("http://127.0.0.1:%d" % rest_port, "grpc://127.0.0.1:%d" % grpc_port):
                before = ok_requests(rest_port)
                result = subprocess.run([halfserve, "bench", "--target", url, "--model-name", "tiny", "--lengths", "8,16",
                                         "--batches", "1,2", "--seconds-per-cell", "0", "--concurrency", "1,2",
                                         "--sweep-seconds", "0.5", "--sweep-length", "16", "--format", "markdown"],
                                        capture_output=True, text=True)
                sent = after = 0
                if result.returncode != 0:
                    failures.append("%s: exit %d\n%s" % (url, result.returncode, result.stderr[-2000:]))
                    continue
                grid_rows = re.findall(r"^\| len (8|16) \|", result.stdout, re.M)
                sweep_rows = re.findall(r"^\| (1|2) \| ([0-9.]+) \|.*\| (\d+) \| 0 \|$", result.stdout, re.M)
                after = ok_requests(rest_port)
                # Each grid cell: a warm-up and 3 timed requests (seconds-per-cell 0); each sweep point: its requests.
                sent = 4 * 4 + sum(int(requests) for _, _, requests in sweep_rows)
                print("%s: %d grid rows, %d sweep points, %d requests sent, server counted %d" %
                      (url, len(grid_rows), len(sweep_rows), sent, after - before))
                if len(grid_rows) != 2 or len(sweep_rows) != 2:
                    failures.append("%s: tables missing:\n%s" % (url, result.stdout))
                if after - before != sent:
                    failures.append("%s: the server counted %d OK requests, the bench sent %d" % (url, after - before, sent))
            if failures:
                print("FAILED:\n" + "\n".join(failures))
                return 1
            return 0
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
