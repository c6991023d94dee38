#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/serve/serving_error.h"

namespace halfserve {

// Runs one gRPC call and records it in TF Serving's request count and latency metrics. Every failure becomes the
// gRPC status with the same code (ServingCode uses gRPC's numbers) and the message naming the problem. Both gRPC
// APIs (TF Serving's and the v2 protocol's) answer through it.
class CallRecorder {
 public:
  CallRecorder(const ModelManager& models, ServingMetrics& metrics) : models_(models), metrics_(metrics) {}

  template <typename Call>
  grpc::Status run(const std::string& model_name, const std::string& api, Call&& call) const {
    const auto started = std::chrono::steady_clock::now();
    ServingCode code = ServingCode::ok;
    std::string message;
    try {
      call();
    } catch (const std::exception& error) {
      code = serving_code_of(error);
      message = error.what();
    }
    const std::string label = models_.metrics_label(model_name);
    metrics_.count_request(label, std::string(serving_code_name(code)));
    const std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - started;
    metrics_.observe_latency(label, api, "GRPC", elapsed.count());
    if (code == ServingCode::ok) return grpc::Status::OK;
    return grpc::Status(static_cast<grpc::StatusCode>(code), message);
  }

 private:
  const ModelManager& models_;
  ServingMetrics& metrics_;
};

}  // namespace halfserve
