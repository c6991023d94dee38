"""Hot reload under load, through the real server: clients keep sending predict requests while a new version
folder appears (served within a few seconds), a corrupt version appears (reported, never served), and SIGTERM
arrives (requests in flight finish, exit 0). Zero failed requests is the requirement. Standard library only.

Usage: check_hot_reload.py HALFSERVE_BINARY
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from harness import free_port


def get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"null")


class Client(threading.Thread):
    """Sends predict requests on one keep-alive connection until told to stop; counts failures."""

    def __init__(self, port, seed):
        super().__init__(daemon=True)
        self.port, self.seed = port, seed
        self.sent = self.failed = 0
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = json.dumps({"instances": [[2] + [(self.seed * 7 + i) % 250 + 5 for i in range(5 + self.seed % 20)] + [3]]})
        while not self.stop.is_set():
            try:
                connection.request("POST", "/v1/models/tiny:predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                self.sent += 1
                if response.status != 200:
                    self.failed += 1
                    self.errors.append((time.time(), "%d %s" % (response.status, payload[:200])))
            except Exception as error:  # a dropped connection is a failed request too
                self.sent += 1
                self.failed += 1
                self.errors.append((time.time(), repr(error)))
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def main(halfserve):
    work = tempfile.mkdtemp()
    try:
        base = os.path.join(work, "tiny")
        def synth(version, seed, text=None):
            folder = os.path.join(work, "staging-%d" % version)
            os.makedirs(folder)
            if text is None:
                subprocess.run([halfserve, "synth", "-o", os.path.join(folder, "model.safetensors"), "--seed", str(seed),
                                "--layers", "1", "--hidden", "32", "--heads", "4", "--ffn", "64", "--vocab", "300",
                                "--positions", "64"], check=True, capture_output=True)
            else:
                with open(os.path.join(folder, "model.safetensors"), "w") as f:
                    f.write(text)
            os.makedirs(base, exist_ok=True)
            os.rename(folder, os.path.join(base, str(version)))  # a version folder appears whole
        synth(1, 1)
        port = free_port()
        server = subprocess.Popen([halfserve, "serve", "--port", "0", "--rest_api_port", str(port), "--model_name", "tiny",
                                   "--model_base_path", base, "--file_system_poll_wait_seconds", "0.5",
                                   "--drain_seconds", "10"], stderr=subprocess.PIPE, text=True)
        for _ in range(100):
            try:
                if get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        clients = [Client(port, seed) for seed in range(8)]
        for client in clients:
            client.start()
        time.sleep(1)

        def wait_for(version, state, seconds=10):
            deadline = time.time() + seconds
            while time.time() < deadline:
                status, body = get(port, "/v1/models/tiny/versions/%d" % version)
                if status == 200 and body["model_version_status"][0]["state"] == state:
                    return body["model_version_status"][0]
                time.sleep(0.1)
            raise SystemExit("version %d did not reach %s within %d s" % (version, state, seconds))

        started = time.time()
        synth(2, 2)
        wait_for(2, "AVAILABLE")
        swap_seconds = time.time() - started
        _, metadata = get(port, "/v1/models/tiny/metadata")
        served_version = metadata["model_spec"]["version"]
        time.sleep(1)
        synth(3, 3, text="this is not a model")
        corrupt = wait_for(3, "END")
        _, latest = get(port, "/v1/models/tiny/metadata")
        time.sleep(1)

        terminated = time.time()
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=30)
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join()
        sent = sum(c.sent for c in clients)
        # Once SIGTERM arrives the server stops taking new requests; before it, none may fail.
        failures = [error for c in clients for when, error in c.errors if when < terminated]
        print("hot reload: version 2 served %.1f s after its folder appeared (poll 0.5 s); %d requests from 8 clients, "
              "%d failed before shutdown" % (swap_seconds, sent, len(failures)))
        print("corrupt version 3: %s: %s" % (corrupt["status"]["error_code"], corrupt["status"]["error_message"][:120]))
        problems = []
        if served_version != "2":
            problems.append("metadata after the swap names version %s" % served_version)
        if latest["model_spec"]["version"] != "2":
            problems.append("a corrupt version 3 replaced version 2")
        if failures:
            problems.append("%d failed requests, e.g. %s" % (len(failures), failures[:3]))
        if exit_code != 0:
            problems.append("SIGTERM exit code %d" % exit_code)
        if swap_seconds > 5:
            problems.append("the new version took %.1f s" % swap_seconds)
        if problems:
            print("FAILED:\n  " + "\n  ".join(problems))
            print(server.stderr.read())
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
