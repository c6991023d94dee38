"""halfserve's gRPC API through TF Serving's own Python client (tensorflow-serving-api + grpcio).

Usage: check_grpc_client.py HALFSERVE_CLI

Writes a small synthetic model with `halfserve synth`, serves it with `halfserve serve` (TF Serving's flags),
then, as a TF Serving client would: waits for GetModelStatus to say AVAILABLE, sends Predict with int32 and
int64 ids built by tf.make_tensor_proto, reads GetModelMetadata's SignatureDefMap, and checks that bad requests
get TF Serving's status codes. Predict's logits must match `halfserve predict` on the same model within 1e-6.
Exits non-zero with a message on the first mismatch.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from harness import IDS, MASK, check, fail, free_port, predict_logits, write_model  # noqa: E402

MODEL = "tiny"
READY_TIMEOUT_SECONDS = 120
CALL_TIMEOUT_SECONDS = 60



def expected_logits(halfserve, model):
    return np.array(predict_logits(halfserve, model), dtype=np.float32)


def wait_until_available(server, model_service, log_path):
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    last_error = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail("halfserve serve exited with %d before it was ready:\n%s" % (server.returncode, open(log_path).read()))
        try:
            reply = model_service.GetModelStatus(request, timeout=5)
            states = [status.state for status in reply.model_version_status]
            if get_model_status_pb2.ModelVersionStatus.AVAILABLE in states:
                return reply
            last_error = "states %s" % states
        except grpc.RpcError as error:
            last_error = "%s: %s" % (error.code(), error.details())
        time.sleep(0.2)
    fail("model not AVAILABLE after %ds (last: %s):\n%s" % (READY_TIMEOUT_SECONDS, last_error, open(log_path).read()))


def predict_request(dtype, input_names=("input_ids", "attention_mask")):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "serving_default"
    request.inputs[input_names[0]].CopyFrom(tf.make_tensor_proto(np.array(IDS, dtype=dtype)))
    request.inputs[input_names[1]].CopyFrom(tf.make_tensor_proto(np.array(MASK, dtype=dtype)))
    return request


def check_predict(predictions, reference):
    for dtype in (np.int32, np.int64):
        name = np.dtype(dtype).name
        reply = predictions.Predict(predict_request(dtype), timeout=CALL_TIMEOUT_SECONDS)
        check(set(reply.outputs) == {"logits", "label_ids"}, "%s: outputs %s" % (name, sorted(reply.outputs)))
        logits = tf.make_ndarray(reply.outputs["logits"])
        check(logits.dtype == np.float32, "%s: logits dtype %s" % (name, logits.dtype))
        check(logits.shape == reference.shape, "%s: logits shape %s, expected %s" % (name, logits.shape, reference.shape))
        difference = float(np.max(np.abs(logits.astype(np.float64) - reference.astype(np.float64))))
        check(difference <= 1e-6, "%s: logits differ from halfserve predict by %g" % (name, difference))
        label_ids = tf.make_ndarray(reply.outputs["label_ids"])
        check(label_ids.dtype == np.int64, "%s: label_ids dtype %s" % (name, label_ids.dtype))
        check(np.array_equal(label_ids, np.argmax(logits, axis=-1)), "%s: label_ids are not the argmax of logits" % name)
        check(reply.model_spec.name == MODEL and reply.model_spec.version.value == 1
              and reply.model_spec.signature_name == "serving_default", "%s: model_spec %s" % (name, reply.model_spec))
        print("Predict %s ids: logits %s match halfserve predict (max difference %g), label_ids int64" %
              (name, logits.shape, difference))

    filtered = predict_request(np.int64)
    filtered.output_filter.append("label_ids")
    filtered.model_spec.version.value = 1
    reply = predictions.Predict(filtered, timeout=CALL_TIMEOUT_SECONDS)
    check(list(reply.outputs) == ["label_ids"], "output_filter: outputs %s" % sorted(reply.outputs))
    print("Predict with output_filter and a version: only label_ids")


def check_metadata(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    reply = predictions.GetModelMetadata(request, timeout=CALL_TIMEOUT_SECONDS)
    check(reply.model_spec.name == MODEL and reply.model_spec.version.value == 1, "metadata model_spec %s" % reply.model_spec)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    check(reply.metadata["signature_def"].Unpack(signatures), "metadata['signature_def'] is not a SignatureDefMap: %s" %
          reply.metadata["signature_def"].type_url)
    serving = signatures.signature_def["serving_default"]
    check(set(serving.inputs) == {"input_ids", "attention_mask", "token_type_ids"}, "inputs %s" % sorted(serving.inputs))
    check(set(serving.outputs) == {"logits", "label_ids"}, "outputs %s" % sorted(serving.outputs))
    check(serving.inputs["input_ids"].dtype == tf.int32.as_datatype_enum, "input_ids dtype %s" % serving.inputs["input_ids"].dtype)
    check(serving.outputs["logits"].dtype == tf.float32.as_datatype_enum, "logits dtype")
    check(serving.outputs["label_ids"].dtype == tf.int64.as_datatype_enum, "label_ids dtype")
    check(serving.method_name == "tensorflow/serving/predict", "method_name %s" % serving.method_name)
    print("GetModelMetadata: SignatureDefMap with %s" % sorted(signatures.signature_def))


def check_status(status_reply):
    versions = [(status.version, status.state, status.status.error_code) for status in status_reply.model_version_status]
    check(versions == [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)], "GetModelStatus %s" % versions)
    print("GetModelStatus: version 1 AVAILABLE, error_code OK")


def expect_rpc_error(call, request, code, fragment):
    try:
        call(request, timeout=CALL_TIMEOUT_SECONDS)
    except grpc.RpcError as error:
        check(error.code() == code, "expected %s, got %s: %s" % (code, error.code(), error.details()))
        check(fragment in error.details(), "expected '%s' in the message: %s" % (fragment, error.details()))
        print("%s: %s" % (code.name, error.details()))
        return
    fail("expected %s for %s" % (code, fragment))


def check_errors(predictions, model_service):
    unknown_model = predict_request(np.int32)
    unknown_model.model_spec.name = "no_such_model"
    expect_rpc_error(predictions.Predict, unknown_model, grpc.StatusCode.NOT_FOUND, "no_such_model")

    bad_input = predict_request(np.int32, input_names=("input_ids", "segment_mask"))
    expect_rpc_error(predictions.Predict, bad_input, grpc.StatusCode.INVALID_ARGUMENT, "segment_mask")

    bad_signature = predict_request(np.int32)
    bad_signature.model_spec.signature_name = "classify"
    expect_rpc_error(predictions.Predict, bad_signature, grpc.StatusCode.INVALID_ARGUMENT, "classify")

    missing_version = predict_request(np.int32)
    missing_version.model_spec.version.value = 42
    expect_rpc_error(predictions.Predict, missing_version, grpc.StatusCode.NOT_FOUND, "42")

    bad_field = get_model_metadata_pb2.GetModelMetadataRequest()
    bad_field.model_spec.name = MODEL
    bad_field.metadata_field.append("graph_def")
    expect_rpc_error(predictions.GetModelMetadata, bad_field, grpc.StatusCode.INVALID_ARGUMENT, "graph_def")

    unknown_label = predict_request(np.int32)
    unknown_label.model_spec.version_label = "stable"
    expect_rpc_error(predictions.Predict, unknown_label, grpc.StatusCode.NOT_FOUND, "stable")

    # TF Serving methods a token classifier does not serve.
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    expect_rpc_error(predictions.Classify, classify, grpc.StatusCode.UNIMPLEMENTED, "")

    unknown_status = get_model_status_pb2.GetModelStatusRequest()
    unknown_status.model_spec.name = "no_such_model"
    expect_rpc_error(model_service.GetModelStatus, unknown_status, grpc.StatusCode.NOT_FOUND, "no_such_model")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    halfserve = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as work:
        base = os.path.join(work, "models")
        model = write_model(halfserve, base, vocab=300)
        reference = expected_logits(halfserve, model)
        port = free_port()
        log_path = os.path.join(work, "serve.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen([halfserve, "serve", "--port", str(port), "--rest_api_port", "0",
                                       "--model_name", MODEL, "--model_base_path", base], stdout=log, stderr=log)
        try:
            with grpc.insecure_channel("127.0.0.1:%d" % port) as channel:
                predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                model_service = model_service_pb2_grpc.ModelServiceStub(channel)
                status_reply = wait_until_available(server, model_service, log_path)
                check_status(status_reply)
                check_predict(predictions, reference)
                check_metadata(predictions)
                check_errors(predictions, model_service)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                    fail("halfserve serve did not stop within 30 s of SIGTERM:\n" + open(log_path).read())
        check(server.returncode == 0, "halfserve serve exited with %d after SIGTERM:\n%s" %
              (server.returncode, open(log_path).read()))
    print("OK: TF Serving's Python gRPC client works against halfserve serve")


if __name__ == "__main__":
    main()
