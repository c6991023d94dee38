"""Runs the halfserve binary with the exact command line a manifest gives its container (ports moved to free
local ones, the model volume's mount point mapped to a temporary folder holding the shipped Chinese model as
version 1, listening on 127.0.0.1 only) and checks what the manifests rely on: the probe paths answer, the metrics
the autoscaler's adapter rule reads exist under those names, and SIGTERM gives 503 on /readyz before the ports
close and an exit (code 0) well inside the pod's termination grace period.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

from harness import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_MODEL = os.path.join(REPO, "models", "punct-zh-int8.safetensors")
STARTUP_SECONDS = 60
UNPUNCTUATED = "今天天气很好我们去公园玩吧"
MARKS = "，。？！、"


def request(port, method, path, body=None, timeout=10):
    """(status, body text), or (None, error text) when nothing answers."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request(method, path, body=None if body is None else json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"} if body is not None else {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except OSError as error:
        return None, str(error)


def local_command(halfserve, argv, flags, mount_path, root, substitutions):
    """The image's command line for the container (argv, KServe's template fields filled in) with overrides
    appended, which halfserve takes as a flag's last value: free local ports, listeners on 127.0.0.1, and the model
    base path with the volume's mount point mapped under `root`. Also returns the ports and that base path."""
    command = [halfserve]
    for argument in argv:
        for template, replacement in substitutions.items():
            argument = argument.replace(template, replacement)
        command.append(argument)
    rest_port, grpc_port = free_port(), free_port()
    command += [f"--rest_api_port={rest_port}", f"--port={grpc_port}", "--rest_api_host=127.0.0.1", "--grpc_host=127.0.0.1"]
    base_path = None
    if "model_base_path" in flags:
        base_path = os.path.normpath(os.path.join(root, os.path.relpath(flags["model_base_path"], mount_path)))
        command.append(f"--model_base_path={base_path}")
    return command, rest_port, grpc_port, base_path


def run_and_drain(checks, where, halfserve, container, image, pod_spec, mount_path, substitutions, while_serving):
    """`image` is (argv, effective flags) of the container, from image_command."""
    with tempfile.TemporaryDirectory(prefix="halfserve-manifests-") as root:
        command, rest_port, grpc_port, base_path = local_command(halfserve, *image, mount_path, root, substitutions)
        if base_path is None:
            checks.require(False, f"{where}: no --model_base_path to run with")
            return
        os.makedirs(os.path.join(base_path, "1"))
        os.symlink(SHIPPED_MODEL, os.path.join(base_path, "1", "model.safetensors"))
        print(f"{where}: running {' '.join(command)}")
        log_path = os.path.join(root, "server.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            status = None
            while time.monotonic() < deadline and server.poll() is None:
                status, _ = request(rest_port, "GET", "/healthz", timeout=2)
                if status == 200:
                    break
                time.sleep(0.2)
            if status != 200:
                with open(log_path) as log:
                    checks.require(False, f"{where}: the command did not start serving (exit {server.poll()}): {log.read()[-2000:]}")
                return
            status, body = request(rest_port, "GET", "/readyz")
            checks.expect(f"{where}: readiness probe GET /readyz", status, 200)
            with socket.create_connection(("127.0.0.1", grpc_port), timeout=5):
                pass  # the gRPC port accepts connections
            while_serving(rest_port)

            # Shutdown as the kubelet does it, after preStop: SIGTERM, then SIGKILL at the end of the grace period.
            pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            allowed = pod_spec.get("terminationGracePeriodSeconds", 30) - pre_stop
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            statuses = []
            while server.poll() is None and time.monotonic() - started < allowed:
                status, _ = request(rest_port, "GET", "/readyz", timeout=1)
                if not statuses or statuses[-1] != status:
                    statuses.append(status)
                if status is None:
                    break
                time.sleep(0.05)
            try:
                code = server.wait(timeout=max(0.0, allowed - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                code = None
            elapsed = time.monotonic() - started
            checks.require(503 in statuses, f"{where}: /readyz never answered 503 after SIGTERM (saw {statuses})")
            checks.expect(f"{where}: exit code after SIGTERM", code, 0)
            print(f"{where}: after SIGTERM /readyz went {statuses}; exited {code} after {elapsed:.1f} s "
                  f"(the pod allows {allowed} s after preStop)")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def check_deployment_command(checks, halfserve, container, image, pod_spec, metric_names):
    model_name = image[1].get("model_name")
    mount_path = next((mount["mountPath"] for mount in container.get("volumeMounts", [])
                       if mount.get("readOnly") and mount["mountPath"] != "/tmp"), "/models")

    def while_serving(rest_port):
        status, body = request(rest_port, "POST", f"/v1/models/{model_name}:punctuate", {"text": UNPUNCTUATED})
        checks.expect("Deployment: POST :punctuate", status, 200)
        text = json.loads(body).get("text", "") if status == 200 else ""
        checks.require(text != UNPUNCTUATED and "".join(c for c in text if c not in MARKS) == UNPUNCTUATED,
                       f"Deployment: :punctuate gave {text!r}, not the input with marks added")
        status, metrics = request(rest_port, "GET", "/monitoring/prometheus/metrics")
        checks.expect("Deployment: ServiceMonitor's path", status, 200)
        samples = {line.split("{")[0].split(" ")[0] for line in metrics.splitlines() if line and not line.startswith("#")}
        for name in sorted(metric_names):
            checks.require(name in samples, f"the adapter rule reads {name}, which halfserve does not export "
                                            f"(it exports {sorted(samples)})")
        print(f"Deployment: halfserve exports {sorted(name for name in samples if 'queue_time' in name)}")

    run_and_drain(checks, "Deployment", halfserve, container, image, pod_spec, mount_path, {}, while_serving)


def check_runtime_command(checks, halfserve, container, image, model_name, termination_grace_seconds):
    def while_serving(rest_port):
        status, body = request(rest_port, "GET", f"/v1/models/{model_name}")
        states = [entry.get("state") for entry in json.loads(body).get("model_version_status", [])] if status == 200 else []
        checks.expect(f"ServingRuntime: GET /v1/models/{model_name} states", states, ["AVAILABLE"])
        status, _ = request(rest_port, "GET", "/v2/health/ready")
        if status == 404:
            print("note: this halfserve answers 404 at /v2/health/ready (no v2 protocol in this build yet): v2 unchecked")
        else:
            checks.expect("ServingRuntime: GET /v2/health/ready", status, 200)
            status, _ = request(rest_port, "GET", f"/v2/models/{model_name}/ready")
            checks.expect(f"ServingRuntime: GET /v2/models/{model_name}/ready", status, 200)

    # KServe's predictor pod: the runtime's container with the InferenceService's grace period.
    run_and_drain(checks, "ServingRuntime", halfserve, container, image,
                  {"terminationGracePeriodSeconds": termination_grace_seconds}, "/mnt/models",
                  {"{{.Name}}": model_name}, while_serving)
