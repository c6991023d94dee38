#pragma once

#include <cstddef>
#include <memory>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "inference/grpc_predict_v2.grpc.pb.h"
#include "serve/grpc_call_recorder.h"
#include "serve/inference_v2.h"
#include "serve/request_threads.h"

namespace halfserve {

// A ModelInfer request's fields as the protocol-neutral request: typed contents or raw_input_contents, checked
// against each input's datatype and shape. Throws InvalidArgument naming the input.
v2::InferRequest read_grpc_infer_request(const inference::ModelInferRequest& request);

// The Open Inference Protocol's gRPC service (inference.GRPCInferenceService), beside TF Serving's on the same
// port: ModelInfer reads its tensors into a v2::InferRequest and runs on the same call threads, through the same
// v2::infer, as every other protocol's predict; outputs go back as raw_output_contents, as Triton sends them.
class GrpcInferenceService final : public inference::GRPCInferenceService::CallbackService {
 public:
  GrpcInferenceService(ModelManager& models, ServingMetrics& metrics, size_t max_message_bytes, RequestThreads& calls,
                       size_t max_waiting_calls)
      : models_(models),
        max_message_bytes_(max_message_bytes),
        recorder_(models, metrics),
        calls_(calls),
        max_waiting_calls_(max_waiting_calls) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context, const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context, const inference::ServerReadyRequest*,
                                        inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context, const inference::ModelReadyRequest* request,
                                       inference::ModelReadyResponse* response) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest*,
                                           inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context, const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override;

 private:
  ModelManager& models_;
  size_t max_message_bytes_;
  CallRecorder recorder_;
  RequestThreads& calls_;
  size_t max_waiting_calls_;
};

}  // namespace halfserve
