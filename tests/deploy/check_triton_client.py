"""halfserve's Open Inference Protocol (KServe v2) through Triton's own Python client, tritonclient[http,grpc] 2.73.

Usage: check_triton_client.py HALFSERVE_CLI

Writes a small synthetic model with `halfserve synth`, serves it with `halfserve serve`, then uses tritonclient
unchanged, over REST and over gRPC: liveness, readiness, server and model metadata, infer with INT32 and INT64 ids
(binary tensors and JSON tensors over REST, raw contents over gRPC), requested outputs, a model version, a request
id, and the errors a client meets (unknown model or version, a wrong input name, datatype or shape). Logits must
equal `halfserve predict`'s on the same inputs within 1e-6, label ids their argmax. Prints each check; exits non-zero
after listing every failure.
"""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from harness import IDS, MASK, Checks, fail, free_port, predict_logits, write_model  # noqa: E402

MODEL = "tiny"
READY_TIMEOUT_SECONDS = 120



def expected_logits(halfserve, model):
    return np.array(predict_logits(halfserve, model), dtype=np.float32)


def inputs_for(module, dtype, binary=None, names=("input_ids", "attention_mask"), datatype=None, ids=None):
    """tritonclient's InferInput list for the ids and mask, as `dtype` ("INT32" or "INT64")."""
    ids = np.array(IDS if ids is None else ids, dtype=np.int32 if dtype == "INT32" else np.int64)
    mask = np.array(MASK, dtype=ids.dtype)
    tensors = []
    for name, values in zip(names, (ids, mask)):
        tensor = module.InferInput(name, list(values.shape), datatype or dtype)
        if binary is None:
            tensor.set_data_from_numpy(values)
        else:
            tensor.set_data_from_numpy(values, binary_data=binary)
        tensors.append(tensor)
    return tensors


def compare_outputs(checks, what, result, reference):
    logits = result.as_numpy("logits")
    label_ids = result.as_numpy("label_ids")
    checks.require(logits is not None and label_ids is not None, f"{what}: logits and label_ids returned")
    if logits is None or label_ids is None:
        return
    checks.expect(f"{what}: logits dtype", logits.dtype, np.float32)
    checks.expect(f"{what}: logits shape", logits.shape, reference.shape)
    if logits.shape == reference.shape:
        difference = float(np.max(np.abs(logits.astype(np.float64) - reference.astype(np.float64))))
        checks.require(difference <= 1e-6, f"{what}: logits differ from halfserve predict by {difference:g}")
        print(f"{what}: logits {logits.shape} match halfserve predict (max difference {difference:g})")
    checks.expect(f"{what}: label_ids dtype", label_ids.dtype, np.int64)
    checks.require(np.array_equal(label_ids, np.argmax(logits, axis=-1)), f"{what}: label_ids are not the argmax")


def expect_error(checks, what, call, status, fragment):
    try:
        call()
    except InferenceServerException as error:
        checks.expect(f"{what}: status", error.status(), status)
        checks.require(fragment in (error.message() or ""), f"{what}: '{fragment}' not in {error.message()!r}")
        print(f"{what}: {error.status()} {error.message()}")
        return
    checks.require(False, f"{what}: no error raised")


def check_metadata(checks, protocol, server_metadata, model_metadata):
    checks.expect(f"{protocol} server name", server_metadata["name"], "halfserve")
    checks.expect(f"{protocol} model name", model_metadata["name"], MODEL)
    checks.expect(f"{protocol} versions", list(model_metadata["versions"]), ["1"])
    inputs = {tensor["name"]: (tensor["datatype"], [int(size) for size in tensor["shape"]])
              for tensor in model_metadata["inputs"]}
    outputs = {tensor["name"]: (tensor["datatype"], [int(size) for size in tensor["shape"]])
               for tensor in model_metadata["outputs"]}
    checks.expect(f"{protocol} inputs", inputs, {name: ("INT32", [-1, -1])
                                                 for name in ("input_ids", "attention_mask", "token_type_ids")})
    labels = outputs.get("logits", (None, [0, 0, 0]))[1][2]
    checks.expect(f"{protocol} outputs", outputs, {"logits": ("FP32", [-1, -1, labels]), "label_ids": ("INT64", [-1, -1])})
    print(f"{protocol} metadata: inputs {sorted(inputs)}, outputs {outputs}")


def check_http(checks, url, reference):
    client = httpclient.InferenceServerClient(url=url, network_timeout=60)
    checks.require(client.is_server_live(), "HTTP: server live")
    checks.require(client.is_server_ready(), "HTTP: server ready")
    checks.require(client.is_model_ready(MODEL), "HTTP: model ready")
    checks.require(client.is_model_ready(MODEL, "1"), "HTTP: model version 1 ready")
    checks.require(not client.is_model_ready(MODEL, "7"), "HTTP: model version 7 not ready")
    server_metadata = client.get_server_metadata()
    checks.require("binary_tensor_data" in server_metadata.get("extensions", []), "HTTP: binary_tensor_data listed")
    check_metadata(checks, "HTTP", server_metadata, client.get_model_metadata(MODEL))

    for dtype in ("INT32", "INT64"):
        # tritonclient's defaults: binary input tensors, every output binary (binary_data_output).
        result = client.infer(MODEL, inputs_for(httpclient, dtype), request_id=f"req-{dtype}")
        compare_outputs(checks, f"HTTP infer {dtype} binary", result, reference)
        checks.expect(f"HTTP infer {dtype}: id", result.get_response()["id"], f"req-{dtype}")
        checks.expect(f"HTTP infer {dtype}: model_version", result.get_response()["model_version"], "1")
    # JSON tensors both ways.
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=False),
               httpclient.InferRequestedOutput("label_ids", binary_data=False)]
    result = client.infer(MODEL, inputs_for(httpclient, "INT64", binary=False), outputs=outputs, model_version="1")
    compare_outputs(checks, "HTTP infer JSON tensors", result, reference)
    checks.require("data" in result.get_output("logits"), "HTTP JSON output carries its data inline")
    # One output asked for: only it comes back.
    result = client.infer(MODEL, inputs_for(httpclient, "INT32"), outputs=[httpclient.InferRequestedOutput("label_ids")])
    checks.expect("HTTP requested outputs", [o["name"] for o in result.get_response()["outputs"]], ["label_ids"])
    checks.require(np.array_equal(result.as_numpy("label_ids"), np.argmax(reference, axis=-1)),
                   "HTTP label_ids alone equal the reference's argmax")

    expect_error(checks, "HTTP unknown model", lambda: client.infer("nope", inputs_for(httpclient, "INT32")),
                 "404", "nope")
    expect_error(checks, "HTTP unknown version",
                 lambda: client.infer(MODEL, inputs_for(httpclient, "INT32"), model_version="7"), "404", "7")
    expect_error(checks, "HTTP wrong input name",
                 lambda: client.infer(MODEL, inputs_for(httpclient, "INT32", names=("input_ids", "segment_mask"))),
                 "400", "segment_mask")
    expect_error(checks, "HTTP wrong datatype",
                 lambda: client.infer(MODEL, [httpclient.InferInput("input_ids", [1, 3], "FP32")
                                              .set_data_from_numpy(np.ones((1, 3), np.float32))]),
                 "400", "INT32 or INT64")
    expect_error(checks, "HTTP id outside the vocabulary",
                 lambda: client.infer(MODEL, inputs_for(httpclient, "INT32", ids=[[2, 99999, 3, 0, 0, 0]] * 2)),
                 "400", "99999")
    expect_error(checks, "HTTP unknown output",
                 lambda: client.infer(MODEL, inputs_for(httpclient, "INT32"),
                                      outputs=[httpclient.InferRequestedOutput("scores")]), "400", "scores")
    expect_error(checks, "HTTP unknown model metadata", lambda: client.get_model_metadata("nope"), "404", "nope")


def check_grpc(checks, url, reference):
    client = grpcclient.InferenceServerClient(url=url)
    checks.require(client.is_server_live(), "gRPC: server live")
    checks.require(client.is_server_ready(), "gRPC: server ready")
    checks.require(client.is_model_ready(MODEL), "gRPC: model ready")
    checks.require(not client.is_model_ready(MODEL, "7"), "gRPC: model version 7 not ready")
    server_metadata = client.get_server_metadata(as_json=True)
    check_metadata(checks, "gRPC", server_metadata, client.get_model_metadata(MODEL, as_json=True))

    for dtype in ("INT32", "INT64"):
        result = client.infer(MODEL, inputs_for(grpcclient, dtype), request_id=f"g-{dtype}", client_timeout=60)
        compare_outputs(checks, f"gRPC infer {dtype}", result, reference)
        checks.expect(f"gRPC infer {dtype}: id", result.get_response().id, f"g-{dtype}")
    result = client.infer(MODEL, inputs_for(grpcclient, "INT64"), model_version="1",
                          outputs=[grpcclient.InferRequestedOutput("label_ids")])
    checks.expect("gRPC requested outputs", [o.name for o in result.get_response().outputs], ["label_ids"])

    expect_error(checks, "gRPC unknown model", lambda: client.infer("nope", inputs_for(grpcclient, "INT32")),
                 "StatusCode.NOT_FOUND", "nope")
    expect_error(checks, "gRPC wrong input name",
                 lambda: client.infer(MODEL, inputs_for(grpcclient, "INT32", names=("input_ids", "segment_mask"))),
                 "StatusCode.INVALID_ARGUMENT", "segment_mask")
    expect_error(checks, "gRPC wrong datatype",
                 lambda: client.infer(MODEL, [grpcclient.InferInput("input_ids", [1, 3], "FP32")
                                              .set_data_from_numpy(np.ones((1, 3), np.float32))]),
                 "StatusCode.INVALID_ARGUMENT", "INT32 or INT64")
    expect_error(checks, "gRPC unimplemented extension", lambda: client.get_inference_statistics(MODEL),
                 "StatusCode.UNIMPLEMENTED", "")


def wait_until_ready(server, rest_port, log_path):
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{rest_port}")
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"halfserve serve exited with {server.returncode}:\n{open(log_path).read()}")
        try:
            if client.is_server_ready():
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.2)
    fail(f"not ready after {READY_TIMEOUT_SECONDS}s:\n{open(log_path).read()}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    halfserve = os.path.abspath(sys.argv[1])
    checks = Checks()
    with tempfile.TemporaryDirectory() as work:
        base = os.path.join(work, "models")
        model = write_model(halfserve, base, vocab=300)
        reference = expected_logits(halfserve, model)
        rest_port, grpc_port = free_port(), free_port()
        log_path = os.path.join(work, "serve.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen([halfserve, "serve", "--port", str(grpc_port), "--rest_api_port", str(rest_port),
                                       "--model_name", MODEL, "--model_base_path", base, "--enable_batching"],
                                      stdout=log, stderr=log)
        try:
            wait_until_ready(server, rest_port, log_path)
            check_http(checks, f"127.0.0.1:{rest_port}", reference)
            check_grpc(checks, f"127.0.0.1:{grpc_port}", reference)
            checks.require(server.poll() is None, "the server is still running after every check")
        finally:
            server.terminate()
            server.wait(60)
    checks.finish()


if __name__ == "__main__":
    main()
