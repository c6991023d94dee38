#include "halfserve/serve/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <climits>
#include <set>

#include "halfserve/serve/model_manager.h"
#include "halfserve/serve/predict_json.h"
#include "halfserve/serve/serving_error.h"
#include "serve/grpc_call_recorder.h"
#include "serve/grpc_inference_service.h"
#include "serve/grpc_punctuation_service.h"
#include "serve/request_threads.h"
#include "serve/tensor_proto_io.h"
#include "tensorflow_serving/apis/model_service.grpc.pb.h"
#include "tensorflow_serving/apis/prediction_service.grpc.pb.h"

namespace halfserve {

namespace {

namespace tfs = tensorflow::serving;

// Predict calls waiting for one of the max_threads call threads, beyond which a call is refused with
// RESOURCE_EXHAUSTED: a burst waits its turn, a flood does not pile up requests in memory without bound.
constexpr size_t kMaxWaitingCalls = 4096;
// Punctuation streams open at once; each holds a window of tokens and a descriptor.
constexpr size_t kMaxPunctuationStreams = 1000;
constexpr std::string_view kDefaultSignature = "serving_default";
constexpr std::string_view kSignatureDefField = "signature_def";

ServingError invalid_argument(const std::string& message) { return ServingError(ServingCode::invalid_argument, message); }

std::optional<int64_t> requested_version(const tfs::ModelSpec& spec) {
  if (!spec.has_version()) return std::nullopt;
  return spec.version().value();
}

std::shared_ptr<ServedVersion> find_version(const ModelManager& models, const tfs::ModelSpec& spec) {
  return models.find(spec.name(), requested_version(spec), spec.version_label());
}

std::string signature_names(const ModelMetadata& metadata) {
  std::string names;
  for (const auto& signature : metadata.signatures) names += (names.empty() ? "" : ", ") + signature.name;
  return names;
}

// The signature a request names; without a name, serving_default, or the model's first signature when it has
// no serving_default (as the REST path does).
const Signature& find_signature(const ServedVersion& served, const std::string& requested) {
  const ModelMetadata& metadata = served.metadata();
  const std::string name = requested.empty() ? std::string(kDefaultSignature) : requested;
  if (const Signature* signature = metadata.find_signature(name)) return *signature;
  if (requested.empty()) return metadata.default_signature();
  throw invalid_argument("signature '" + requested + "' not found in model '" + served.model_name() + "' version " +
                         std::to_string(served.version()) + " (signatures: " + signature_names(metadata) + ")");
}

void set_model_spec(const ServedVersion& served, tfs::ModelSpec& spec) {
  spec.set_name(served.model_name());
  spec.mutable_version()->set_value(served.version());
}

std::vector<std::string> output_filter(const tfs::PredictRequest& request) {
  std::vector<std::string> names(request.output_filter().begin(), request.output_filter().end());
  std::set<std::string> seen;
  for (const auto& name : names)
    if (!seen.insert(name).second) throw invalid_argument("output_filter names '" + name + "' twice");
  return names;
}

void predict(ModelManager& models, size_t max_message_bytes, const tfs::PredictRequest& request,
             tfs::PredictResponse& response) {
  if (!request.has_model_spec()) throw invalid_argument("Missing ModelSpec");
  const auto served = find_version(models, request.model_spec());
  const Signature& signature = find_signature(*served, request.model_spec().signature_name());
  const ModelMetadata& metadata = served->metadata();
  const InputBatch inputs = read_input_batch(request.inputs(), signature);
  const auto selected = select_outputs(signature, output_filter(request), metadata.has_head());
  const OutputBatch outputs = served->run(inputs, output_selection(selected));
  const auto num_labels = static_cast<int64_t>(metadata.labels.size());
  for (const auto& [name, role] : selected)
    write_output_tensor(outputs, role, num_labels, metadata.config.hidden_size, (*response.mutable_outputs())[name]);
  set_model_spec(*served, *response.mutable_model_spec());
  response.mutable_model_spec()->set_signature_name(signature.name);
  // gRPC would refuse to send it with a bare RESOURCE_EXHAUSTED after the call counted as OK; say why instead.
  if (response.ByteSizeLong() > max_message_bytes)
    throw ServingError(ServingCode::resource_exhausted,
                       "reply of " + std::to_string(response.ByteSizeLong()) + " bytes exceeds the message limit of " +
                           std::to_string(max_message_bytes) + " bytes (send fewer rows, or use output_filter)");
}

// TF Serving's checks, with its messages.
void check_metadata_fields(const tfs::GetModelMetadataRequest& request) {
  if (request.metadata_field_size() == 0)
    throw invalid_argument("GetModelMetadataRequest must specify at least one metadata_field");
  for (const auto& field : request.metadata_field())
    if (field != kSignatureDefField) throw invalid_argument("Metadata field " + field + " is not supported");
}

void get_model_metadata(ModelManager& models, const tfs::GetModelMetadataRequest& request,
                        tfs::GetModelMetadataResponse& response) {
  if (!request.has_model_spec()) throw invalid_argument("Missing ModelSpec");
  check_metadata_fields(request);
  const auto served = find_version(models, request.model_spec());
  const ModelMetadata& metadata = served->metadata();
  tfs::SignatureDefMap signatures;
  for (const auto& signature : metadata.signatures)
    (*signatures.mutable_signature_def())[signature.name] =
        signature_def(signature, static_cast<int64_t>(metadata.labels.size()), metadata.config.hidden_size);
  (*response.mutable_metadata())[std::string(kSignatureDefField)].PackFrom(signatures);
  set_model_spec(*served, *response.mutable_model_spec());
}

void get_model_status(ModelManager& models, const tfs::GetModelStatusRequest& request,
                      tfs::GetModelStatusResponse& response) {
  if (!request.has_model_spec()) throw invalid_argument("Missing ModelSpec");
  const tfs::ModelSpec& spec = request.model_spec();
  for (const VersionStatus& status : models.status(spec.name(), requested_version(spec), spec.version_label())) {
    tfs::ModelVersionStatus& entry = *response.add_model_version_status();
    entry.set_version(status.version);
    entry.set_state(static_cast<tfs::ModelVersionStatus::State>(version_state_number(status.state)));
    entry.mutable_status()->set_error_code(static_cast<int>(status.error_code));
    entry.mutable_status()->set_error_message(status.error_message);
  }
}

// A call that blocks (Predict waits for its batch) runs on a call thread; gRPC's callback threads only hand it
// over, so a burst of calls waits in the queue instead of failing for want of threads.
class PredictionService final : public tfs::PredictionService::CallbackService {
 public:
  PredictionService(ModelManager& models, ServingMetrics& metrics, size_t max_message_bytes, RequestThreads& calls)
      : models_(models), max_message_bytes_(max_message_bytes), recorder_(models, metrics), calls_(calls) {}

  grpc::ServerUnaryReactor* Predict(grpc::CallbackServerContext* context, const tfs::PredictRequest* request,
                                    tfs::PredictResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const std::string& model = request->model_spec().name();
    auto call = [this, context, reactor, request, response] {
      if (context->IsCancelled()) return reactor->Finish(grpc::Status::CANCELLED);  // gone while it waited
      reactor->Finish(recorder_.run(request->model_spec().name(), "predict",
                                    [&] { predict(models_, max_message_bytes_, *request, *response); }));
    };
    if (!calls_.enqueue(call))
      reactor->Finish(recorder_.run(model, "predict", [] {
        throw ServingError(ServingCode::resource_exhausted, "too many Predict calls waiting (" +
                                                                std::to_string(kMaxWaitingCalls) + "); retry later");
      }));
    return reactor;
  }

  grpc::ServerUnaryReactor* GetModelMetadata(grpc::CallbackServerContext* context,
                                             const tfs::GetModelMetadataRequest* request,
                                             tfs::GetModelMetadataResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(recorder_.run(request->model_spec().name(), "get_model_metadata",
                                  [&] { get_model_metadata(models_, *request, *response); }));
    return reactor;
  }

 private:
  ModelManager& models_;
  size_t max_message_bytes_;
  CallRecorder recorder_;
  RequestThreads& calls_;
};

class ModelService final : public tfs::ModelService::CallbackService {
 public:
  ModelService(ModelManager& models, ServingMetrics& metrics) : models_(models), recorder_(models, metrics) {}

  grpc::ServerUnaryReactor* GetModelStatus(grpc::CallbackServerContext* context, const tfs::GetModelStatusRequest* request,
                                           tfs::GetModelStatusResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(recorder_.run(request->model_spec().name(), "get_model_status",
                                  [&] { get_model_status(models_, *request, *response); }));
    return reactor;
  }

 private:
  ModelManager& models_;
  CallRecorder recorder_;
};

int message_limit(size_t max_message_bytes) {
  return static_cast<int>(std::min<size_t>(max_message_bytes, static_cast<size_t>(INT_MAX)));
}

}  // namespace

struct GrpcServer::Impl {
  Impl(ModelManager& models, ServingMetrics& metrics, std::string address, size_t max_message_bytes, int max_threads)
      : address(std::move(address)),
        max_message_bytes(max_message_bytes),
        calls(static_cast<size_t>(max_threads), kMaxWaitingCalls),
        prediction_service(models, metrics, max_message_bytes, calls),
        model_service(models, metrics),
        inference_service(models, metrics, max_message_bytes, calls, kMaxWaitingCalls),
        punctuation_service(models, metrics, calls, kMaxPunctuationStreams) {}

  std::string address;
  size_t max_message_bytes;
  RequestThreads calls;
  PredictionService prediction_service;
  ModelService model_service;
  GrpcInferenceService inference_service;
  GrpcPunctuationService punctuation_service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool stopped = false;
};

GrpcServer::GrpcServer(ModelManager& models, ServingMetrics& metrics, const std::string& address,
                       size_t max_message_bytes, int max_threads)
    : impl_(std::make_unique<Impl>(models, metrics, address, max_message_bytes, max_threads)) {
  if (max_threads < 1) throw Error("gRPC server: max_threads " + std::to_string(max_threads) + " must be at least 1");
}

GrpcServer::~GrpcServer() { shutdown(std::chrono::milliseconds(0)); }

void GrpcServer::start() {
  if (impl_->server) throw Error("gRPC server on " + impl_->address + " is already started");
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(message_limit(impl_->max_message_bytes));
  builder.SetMaxSendMessageSize(message_limit(impl_->max_message_bytes));
  // Without this, gRPC lets a second server bind the same port (SO_REUSEPORT) and requests go to either.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(impl_->address, grpc::InsecureServerCredentials(), &impl_->port);
  builder.RegisterService(&impl_->prediction_service);
  builder.RegisterService(&impl_->model_service);
  builder.RegisterService(&impl_->inference_service);
  builder.RegisterService(&impl_->punctuation_service);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || impl_->port == 0) {
    impl_->server.reset();
    impl_->port = 0;
    throw Error("gRPC server could not listen on " + impl_->address + " (address in use or invalid?)");
  }
}

void GrpcServer::shutdown(std::chrono::milliseconds grace) {
  if (!impl_->server || impl_->stopped) return;
  impl_->stopped = true;
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  impl_->server->Wait();  // every call finished: the call threads have nothing left to answer
  impl_->calls.shutdown();
}

int GrpcServer::port() const { return impl_->port; }

}  // namespace halfserve
