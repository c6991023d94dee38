#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/serve/server_config.h"

namespace halfserve {

class RestServer;
class GrpcServer;

struct ServerOptions {
  std::vector<ServedModelConfig> models;
  ModelManagerOptions manager;
  int grpc_port = 8500;  // 0: no gRPC server
  std::string grpc_host = "0.0.0.0";
  int rest_port = 8501;  // 0: no REST server (as TF Serving's --rest_api_port=0)
  std::string rest_host = "0.0.0.0";
  size_t max_request_bytes = 64 << 20;
  size_t max_streams = 1000;  // WebSocket punctuation streams open at once on the REST port (RestOptions)
  std::function<void(const std::string&)> access_log;
  // On shutdown, how long readiness reports "draining" before the ports close (capped by the grace period).
  std::chrono::milliseconds readiness_grace{1000};
};

// `halfserve serve` as a library object: the model manager, its metrics, and the REST and gRPC front ends.
class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  // Loads the models (failures are reported in their status), then opens the ports. Throws Error when a port
  // cannot be bound.
  void start();
  // Readiness goes false, the ports stop accepting, requests in flight finish (up to `grace`), models unload.
  void shutdown(std::chrono::milliseconds grace);
  int rest_port() const;
  int grpc_port() const;
  ModelManager& models() { return *models_; }
  ServingMetrics& metrics() { return metrics_; }

 private:
  ServerOptions options_;
  ServingMetrics metrics_;
  std::unique_ptr<ModelManager> models_;
  std::unique_ptr<RestServer> rest_;
  std::unique_ptr<GrpcServer> grpc_;
};

}  // namespace halfserve
