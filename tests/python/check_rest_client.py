"""halfserve serve's REST API as TF Serving's REST clients use it: curl and Python requests.

Usage: check_rest_client.py HALFSERVE_CLI

Writes a small synthetic model with `halfserve synth` (the 21128-token vocabulary, so Chinese text tokenizes),
serves it with `halfserve serve` (TF Serving's flags), waits for /readyz, then checks model status, metadata,
predict in row and column form (byte for byte what `halfserve predict` prints for the same request), punctuate
(what `halfserve punctuate` prints for the same texts), Prometheus metrics, the access log, TF Serving's error
statuses, and a clean exit on SIGTERM. Exits non-zero with a message on the first mismatch.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import requests

from harness import check, fail, free_port, write_model

MODEL = "tiny"
READY_TIMEOUT_SECONDS = 120
CALL_TIMEOUT_SECONDS = 60
MAX_REQUEST_BYTES = 200000

COLUMN_REQUEST = {"inputs": {"input_ids": [[101, 791, 1921, 1921, 3698, 102], [101, 872, 1962, 102, 0, 0]],
                             "attention_mask": [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]}}
ROW_REQUEST = {"signature_name": "serving_default",
               "instances": [{"input_ids": [101, 791, 1921, 102], "token_type_ids": [0, 0, 0, 0]},
                             {"input_ids": [101, 872, 1962, 102], "token_type_ids": [0, 0, 0, 0]}]}
TEXTS = ["今天天气很好我们去公园玩吧", "你好世界", "hello world 今天，天气"]


def cli_predict(halfserve, model, request):
    """What `halfserve predict` (the engine in-process, no server) prints for the request."""
    reply = subprocess.run([halfserve, "predict", "--model", model], input=json.dumps(request), text=True,
                           capture_output=True, check=True)
    return reply.stdout.strip()


def cli_punctuate(halfserve, model, texts):
    reply = subprocess.run([halfserve, "punctuate", "--model", model], input="\n".join(texts) + "\n", text=True,
                           capture_output=True, check=True)
    return reply.stdout.split("\n")[:len(texts)]


def curl(url, *args):
    """(status, body) of one curl call."""
    reply = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args, url], text=True,
                           capture_output=True, timeout=CALL_TIMEOUT_SECONDS)
    check(reply.returncode == 0, f"curl {' '.join(args)} {url} failed: {reply.stderr}")
    body, _, status = reply.stdout.rpartition("\n")
    return int(status), body


def wait_until_ready(server, url, log_path):
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"halfserve serve exited with {server.returncode}:\n{open(log_path).read()}")
        try:
            if requests.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    fail(f"/readyz never answered 200 within {READY_TIMEOUT_SECONDS} s:\n{open(log_path).read()}")


def expect_error(reply, status, fragment):
    check(reply.status_code == status, f"{reply.request.method} {reply.url}: status {reply.status_code}, expected "
                                       f"{status}: {reply.text[:300]}")
    error = reply.json().get("error", "")
    check(fragment in error, f"{reply.url}: error {error!r} does not mention {fragment!r}")


def check_with_curl(url, halfserve, model):
    status, body = curl(url + f"/v1/models/{MODEL}")
    check(status == 200, f"curl status: {status} {body}")
    check(json.loads(body) == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]},
        f"curl status body: {body}")
    for request in (COLUMN_REQUEST, ROW_REQUEST):
        status, body = curl(url + f"/v1/models/{MODEL}:predict", "-d", json.dumps(request),
                            "-H", "Content-Type: application/json")
        check(status == 200, f"curl predict: {status} {body}")
        check(body == cli_predict(halfserve, model, request), "curl predict differs from `halfserve predict`")
    status, body = curl(url + "/v1/models/nope:predict", "-d", json.dumps(COLUMN_REQUEST))
    check(status == 404 and "nope" in json.loads(body)["error"], f"curl unknown model: {status} {body}")
    status, body = curl(url + f"/v1/models/{MODEL}:predict", "-d", "{\"inputs\": [[1,")
    check(status == 400 and "error" in json.loads(body), f"curl malformed JSON: {status} {body}")
    status, body = curl(url + "/monitoring/prometheus/metrics")
    check(status == 200 and ":tensorflow:serving:request_count" in body, f"curl metrics: {status}")


def check_with_requests(url, halfserve, model):
    session = requests.Session()  # keep-alive, as TF Serving's Python clients usually are

    status = session.get(url + f"/v1/models/{MODEL}/versions/1", timeout=CALL_TIMEOUT_SECONDS)
    check(status.status_code == 200, f"status: {status.status_code} {status.text}")
    check(status.json()["model_version_status"][0]["state"] == "AVAILABLE", f"status: {status.text}")
    check(status.headers["Content-Type"] == "application/json", f"content type {status.headers['Content-Type']}")

    metadata = session.get(url + f"/v1/models/{MODEL}/metadata", timeout=CALL_TIMEOUT_SECONDS)
    check(metadata.status_code == 200, f"metadata: {metadata.status_code} {metadata.text}")
    document = metadata.json()
    check(document["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"},
          f"model_spec: {document['model_spec']}")
    signature = document["metadata"]["signature_def"]["signature_def"]["serving_default"]
    check(set(signature["inputs"]) == {"input_ids", "attention_mask", "token_type_ids"}, f"inputs: {signature['inputs']}")
    check(signature["inputs"]["input_ids"]["dtype"] == "DT_INT32", "input_ids dtype")
    check(signature["outputs"]["logits"]["tensor_shape"]["dim"][2]["size"] == "6", "logits shape")
    check(signature["method_name"] == "tensorflow/serving/predict", "method_name")

    for request in (COLUMN_REQUEST, ROW_REQUEST):
        reply = session.post(url + f"/v1/models/{MODEL}:predict", json=request, timeout=CALL_TIMEOUT_SECONDS)
        check(reply.status_code == 200, f"predict: {reply.status_code} {reply.text}")
        check(reply.text == cli_predict(halfserve, model, request), "predict differs from `halfserve predict`")
    row = session.post(url + f"/v1/models/{MODEL}/versions/1:predict", json=ROW_REQUEST, timeout=CALL_TIMEOUT_SECONDS)
    check(len(row.json()["predictions"]) == 2, f"row predictions: {row.text[:300]}")

    expected = cli_punctuate(halfserve, model, TEXTS)
    reply = session.post(url + f"/v1/models/{MODEL}:punctuate", json={"texts": TEXTS}, timeout=CALL_TIMEOUT_SECONDS)
    check(reply.status_code == 200, f"punctuate: {reply.status_code} {reply.text}")
    check(reply.json() == {"texts": expected}, f"punctuate: {reply.json()} != {expected}")
    reply = session.post(url + f"/v1/models/{MODEL}:punctuate",
                         json={"text": TEXTS[0], "labels": True, "probabilities": True}, timeout=CALL_TIMEOUT_SECONDS)
    check(reply.status_code == 200, f"punctuate with tokens: {reply.status_code} {reply.text}")
    tokens = reply.json()["tokens"]
    check(reply.json()["text"] == expected[0], "punctuate text with tokens")
    check(len(tokens) == len(TEXTS[0]), f"one token per character: {tokens}")
    for token in tokens:
        check(TEXTS[0].encode()[token["begin"]:token["end"]].decode() == token["token"], f"offsets: {token}")
        check(1 / 6 - 1e-6 <= token["probability"] <= 1, f"probability: {token}")
        check({"token", "begin", "end", "label", "mark", "probability"} == set(token), f"token fields: {token}")

    expect_error(session.get(url + "/v1/models/nope", timeout=CALL_TIMEOUT_SECONDS), 404, "nope")
    expect_error(session.get(url + f"/v1/models/{MODEL}/versions/7", timeout=CALL_TIMEOUT_SECONDS), 404, "7")
    expect_error(session.post(url + f"/v1/models/{MODEL}:predict", json={"inputs": [[1]], "instances": [[1]]},
                              timeout=CALL_TIMEOUT_SECONDS), 400, "both")
    expect_error(session.post(url + f"/v1/models/{MODEL}:predict", json={"inputs": [[1, 999999]]},
                              timeout=CALL_TIMEOUT_SECONDS), 400, "vocabulary")
    expect_error(session.get(url + f"/v1/models/{MODEL}:predict", timeout=CALL_TIMEOUT_SECONDS), 405, "POST")
    expect_error(session.post(url + f"/v1/models/{MODEL}:classify", json={"examples": []},
                              timeout=CALL_TIMEOUT_SECONDS), 501, "classify")
    expect_error(session.post(url + f"/v1/models/{MODEL}:predict", data=b" " * (MAX_REQUEST_BYTES + 1),
                              timeout=CALL_TIMEOUT_SECONDS), 413, "limit")
    expect_error(session.post(url + f"/v1/models/{MODEL}:punctuate", json={"text": "x", "windw": 3},
                              timeout=CALL_TIMEOUT_SECONDS), 400, "windw")
    expect_error(session.get(url + "/v2/anything", timeout=CALL_TIMEOUT_SECONDS), 404, "no route")

    metrics = session.get(url + "/monitoring/prometheus/metrics", timeout=CALL_TIMEOUT_SECONDS)
    check(metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4"), "metrics content type")
    for fragment in (f':tensorflow:serving:request_count{{model_name="{MODEL}",status="OK"}}',
                     f':tensorflow:serving:request_count{{model_name="{MODEL}",status="INVALID_ARGUMENT"}}',
                     f':tensorflow:serving:request_latency_bucket{{model_name="{MODEL}",API="predict",entrypoint="REST"',
                     f':tensorflow:serving:request_latency_count{{model_name="{MODEL}",API="punctuate",entrypoint="REST"}}'):
        check(fragment in metrics.text, f"metrics lack {fragment}")
    check(session.get(url + "/healthz", timeout=CALL_TIMEOUT_SECONDS).status_code == 200, "/healthz")


def main():
    halfserve = sys.argv[1]
    with tempfile.TemporaryDirectory() as scratch:
        base = os.path.join(scratch, MODEL)
        model = write_model(halfserve, base)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = os.path.join(scratch, "serve.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen([halfserve, "serve", "--rest_api_port", str(port), "--port", "0", "--model_name", MODEL,
                                       "--model_base_path", base, "--max_request_bytes", str(MAX_REQUEST_BYTES),
                                       "--access_log"], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(server, url, log_path)
            check_with_curl(url, halfserve, model)
            check_with_requests(url, halfserve, model)
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                fail("halfserve serve did not exit within 60 s of SIGTERM")
            check(code == 0, f"halfserve serve exited with {code}:\n{open(log_path).read()}")
            log_text = open(log_path).read()
            check('"path":"/v1/models/tiny:predict"' in log_text and '"latency_us"' in log_text,
                  f"no access log lines for predict:\n{log_text[-2000:]}")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    print("OK: curl and requests get TF Serving's REST answers from halfserve serve; predict and punctuate match the CLI")


if __name__ == "__main__":
    main()
