"""Median gRPC Predict latency with the real TF Serving client. Usage: grpc_latency.py HOST:PORT MODEL JSON..."""
import json
import statistics
import sys
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def main(target, model, *bodies):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 256 << 20)]))
    medians = []
    for body in bodies:
        ids = np.array(json.load(open(body))["inputs"]["input_ids"], dtype=np.int32)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs["input_ids"].CopyFrom(tf.make_tensor_proto(ids))
        for _ in range(3):
            stub.Predict(request, timeout=60)
        times, deadline = [], time.time() + 10
        while time.time() < deadline or len(times) < 5:
            start = time.perf_counter()
            stub.Predict(request, timeout=60)
            times.append((time.perf_counter() - start) * 1e3)
        medians.append("%.2f" % statistics.median(times))
    print(" ".join(medians))


if __name__ == "__main__":
    main(*sys.argv[1:])
