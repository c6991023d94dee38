#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace halfserve {

class ModelManager;
class ServingMetrics;

struct RestOptions {
  std::string host = "0.0.0.0";
  int port = 8501;  // 0: any free port (see RestServer::port())
  size_t max_body_bytes = 64 << 20;  // larger request bodies get 413
  // Connection threads. cpp-httplib serves each connection on one thread for the connection's whole life, keep-alive
  // included, so this bounds open connections, not requests; connections beyond it wait for a thread. 0: up to
  // 1000, started on demand.
  int threads = 0;
  // How long an idle keep-alive connection stays open. While open it holds its thread, and cpp-httplib 0.11 polls
  // it every ~11 ms (about 1.4 ms of CPU per idle connection-second; 300 idle connections cost ~40% of a core).
  int keep_alive_seconds = 30;
  // One JSON line per request: time, remote, method, path, status, bytes_in, bytes_out, latency_us, model, version.
  // Called on connection threads, concurrently: it must be thread-safe.
  std::function<void(const std::string&)> access_log;
};

// TensorFlow Serving's REST API (model status, metadata, :predict; :classify and :regress answer UNIMPLEMENTED), plus
// raw-text :punctuate, Prometheus metrics at /monitoring/prometheus/metrics, /healthz (liveness) and /readyz
// (readiness). Errors are {"error": "message"} with TF Serving's HTTP status for the code. See docs/serving.md.
class RestServer {
 public:
  RestServer(ModelManager& models, ServingMetrics& metrics, RestOptions options);
  ~RestServer();  // stop()
  RestServer(const RestServer&) = delete;
  RestServer& operator=(const RestServer&) = delete;

  // Binds and serves on threads of its own. Throws Error when it cannot bind (or was already started).
  void start();
  // The bound port (the chosen one when options.port was 0); 0 before start().
  int port() const;
  // Stops accepting, closes idle keep-alive connections, lets requests in flight finish, then returns.
  void stop();
  // While draining, /readyz answers 503 so load balancers move traffic away; requests are still served.
  void set_draining(bool draining);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace halfserve
