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
// Calls run on gRPC's sync server, one thread per call until it returns (a Predict blocks while its batch runs).
// Threads are capped, as TF Serving's --grpc_max_threads caps them: calls beyond the cap fail at once with
// RESOURCE_EXHAUSTED ("Server Threadpool Exhausted") rather than spawning threads, and holding requests in
// memory, without limit.
class GrpcServer {
 public:
  static constexpr int kDefaultMaxThreads = 256;

  // `address` is "host:port" ("0.0.0.0:8500"; port 0 picks a free one). `max_message_bytes` bounds both the
  // requests accepted and the replies sent. `max_threads` counts gRPC's polling threads too (up to 8); throws
  // Error below 9.
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
