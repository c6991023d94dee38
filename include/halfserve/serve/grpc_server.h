#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace halfserve {

class ModelManager;
class ServingMetrics;

// TF Serving's gRPC API (package tensorflow.serving), wire compatible with its clients:
//   PredictionService/Predict, PredictionService/GetModelMetadata, ModelService/GetModelStatus.
// Other TF Serving methods answer UNIMPLEMENTED.
//
// Calls arrive on gRPC's callback API. A Predict (which blocks while its batch runs) is handed to one of up to
// `max_threads` call threads, started on demand; calls beyond them wait in turn, up to 4096 waiting, past which
// they fail at once with RESOURCE_EXHAUSTED. Metadata and status calls answer on gRPC's own threads.
class GrpcServer {
 public:
  static constexpr int kDefaultMaxThreads = 256;

  // `address` is "host:port" ("0.0.0.0:8500"; port 0 picks a free one). `max_message_bytes` bounds both the
  // requests accepted and the replies sent. `max_threads`: Predict calls running at once (Error below 1).
  GrpcServer(ModelManager& models, ServingMetrics& metrics, const std::string& address, size_t max_message_bytes,
             int max_threads = kDefaultMaxThreads);
  ~GrpcServer();  // shuts down at once if still running
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Binds and starts serving; throws Error naming the address when it cannot be bound.
  void start();
  // Stops accepting calls, lets calls in flight finish for up to `grace`, then cancels the rest. Idempotent.
  void shutdown(std::chrono::milliseconds grace);
  // The bound port (the one chosen when the address asked for port 0); 0 before start().
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace halfserve
