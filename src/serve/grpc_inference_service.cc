#include "serve/grpc_inference_service.h"

#include <limits>

#include "serve/inference_v2.h"

namespace halfserve {

namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;

// An input's values from its typed contents: int_contents for INT32, int64_contents for INT64.
template <typename Values>
IntMatrix matrix_from_contents(const std::string& name, const std::vector<int64_t>& shape, const Values& values,
                               const char* field) {
  const int64_t count = shape[0] * shape[1];
  if (values.size() != count)
    throw InvalidArgument("input '" + name + "' has " + std::to_string(values.size()) + " values in " + field +
                          "; its shape needs " + std::to_string(count));
  IntMatrix matrix{shape[0], shape[1], {}};
  matrix.values.reserve(static_cast<size_t>(count));
  for (const auto value : values) {
    if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max())
      throw InvalidArgument("input '" + name + "' value " + std::to_string(value) + " is out of int32 range");
    matrix.values.push_back(static_cast<int32_t>(value));
  }
  return matrix;
}

NamedInput read_input(const ModelInferRequest& request, int index) {
  const ModelInferRequest::InferInputTensor& tensor = request.inputs(index);
  const std::vector<int64_t> shape(tensor.shape().begin(), tensor.shape().end());
  v2::check_input_tensor(tensor.name(), tensor.datatype(), shape);
  if (request.raw_input_contents_size() > 0)
    return {tensor.name(), v2::read_raw_matrix(tensor.name(), tensor.datatype(), shape, request.raw_input_contents(index))};
  if (tensor.datatype() == v2::kInt32)
    return {tensor.name(), matrix_from_contents(tensor.name(), shape, tensor.contents().int_contents(), "int_contents")};
  return {tensor.name(), matrix_from_contents(tensor.name(), shape, tensor.contents().int64_contents(), "int64_contents")};
}

}  // namespace

v2::InferRequest read_grpc_infer_request(const ModelInferRequest& request) {
  if (request.raw_input_contents_size() > 0 && request.raw_input_contents_size() != request.inputs_size())
    throw InvalidArgument("raw_input_contents has " + std::to_string(request.raw_input_contents_size()) +
                          " entries for " + std::to_string(request.inputs_size()) + " inputs");
  v2::InferRequest infer;
  infer.model_name = request.model_name();
  infer.model_version = request.model_version();
  infer.id = request.id();
  for (int i = 0; i < request.inputs_size(); ++i) infer.inputs.push_back(read_input(request, i));
  for (const auto& output : request.outputs()) infer.outputs.push_back({output.name(), true});
  if (infer.inputs.empty()) throw InvalidArgument("request has no inputs");
  return infer;
}

namespace {

void write_infer_response(const v2::InferResponse& result, ModelInferResponse& response) {
  response.set_model_name(result.model_name);
  response.set_model_version(result.model_version);
  response.set_id(result.id);
  for (const v2::OutputTensor& output : result.outputs) {
    ModelInferResponse::InferOutputTensor& tensor = *response.add_outputs();
    tensor.set_name(output.name);
    tensor.set_datatype(std::string(output.datatype));
    for (const int64_t size : output.shape) tensor.add_shape(size);
    response.add_raw_output_contents(v2::output_bytes(result, output));
  }
}

void fill_tensor_metadata(const v2::TensorMetadata& tensor, inference::ModelMetadataResponse::TensorMetadata& out) {
  out.set_name(tensor.name);
  out.set_datatype(std::string(tensor.datatype));
  for (const int64_t size : tensor.shape) out.add_shape(size);
}

}  // namespace

grpc::ServerUnaryReactor* GrpcInferenceService::ServerLive(grpc::CallbackServerContext* context,
                                                           const inference::ServerLiveRequest*,
                                                           inference::ServerLiveResponse* response) {
  response->set_live(true);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GrpcInferenceService::ServerReady(grpc::CallbackServerContext* context,
                                                            const inference::ServerReadyRequest*,
                                                            inference::ServerReadyResponse* response) {
  response->set_ready(models_.ready());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GrpcInferenceService::ModelReady(grpc::CallbackServerContext* context,
                                                           const inference::ModelReadyRequest* request,
                                                           inference::ModelReadyResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(recorder_.run(request->name(), "model_ready", [&] {
    response->set_ready(v2::model_ready(models_, request->name(), request->version()));
  }));
  return reactor;
}

grpc::ServerUnaryReactor* GrpcInferenceService::ServerMetadata(grpc::CallbackServerContext* context,
                                                               const inference::ServerMetadataRequest*,
                                                               inference::ServerMetadataResponse* response) {
  const v2::ServerMetadataV2 metadata = v2::server_metadata();
  response->set_name(metadata.name);
  response->set_version(metadata.version);
  // The binary tensor extension is REST's; gRPC always carries raw bytes.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GrpcInferenceService::ModelMetadata(grpc::CallbackServerContext* context,
                                                              const inference::ModelMetadataRequest* request,
                                                              inference::ModelMetadataResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(recorder_.run(request->name(), "model_metadata", [&] {
    const v2::ModelMetadataV2 metadata = v2::model_metadata(models_, request->name(), request->version());
    response->set_name(metadata.name);
    for (const std::string& version : metadata.versions) response->add_versions(version);
    response->set_platform(metadata.platform);
    for (const v2::TensorMetadata& input : metadata.inputs) fill_tensor_metadata(input, *response->add_inputs());
    for (const v2::TensorMetadata& output : metadata.outputs) fill_tensor_metadata(output, *response->add_outputs());
  }));
  return reactor;
}

// Waits for its batch on a call thread; gRPC's callback threads only hand it over (as TF Serving's Predict does).
grpc::ServerUnaryReactor* GrpcInferenceService::ModelInfer(grpc::CallbackServerContext* context,
                                                           const ModelInferRequest* request,
                                                           ModelInferResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto call = [this, context, reactor, request, response] {
    if (context->IsCancelled()) return reactor->Finish(grpc::Status::CANCELLED);
    reactor->Finish(recorder_.run(request->model_name(), "infer", [&] {
      write_infer_response(v2::infer(models_, read_grpc_infer_request(*request)), *response);
      if (response->ByteSizeLong() > max_message_bytes_)
        throw ServingError(ServingCode::resource_exhausted,
                           "reply of " + std::to_string(response->ByteSizeLong()) +
                               " bytes exceeds the message limit of " + std::to_string(max_message_bytes_) +
                               " bytes (send fewer rows, or request fewer outputs)");
    }));
  };
  if (!calls_.enqueue(call))
    reactor->Finish(recorder_.run(request->model_name(), "infer", [this] {
      throw ServingError(ServingCode::resource_exhausted,
                         "too many inference calls waiting (" + std::to_string(max_waiting_calls_) + "); retry later");
    }));
  return reactor;
}

}  // namespace halfserve
