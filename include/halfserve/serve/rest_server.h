#pragma once

#include <chrono>
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
  // Requests handled at once (each waits for its model on its own thread, so the batcher sees them together);
  // more wait in turn. 0: up to 1000, started on demand. Connections are not threads: idle and slow ones cost a
  // descriptor on the event loop (docs/reliability.md).
  int threads = 0;
  // Open connections served at most. Up to 256 more are answered 503 (Retry-After: 1) and closed; beyond that a
  // connection is closed unanswered. The process's descriptor limit is raised to fit.
  size_t max_connections = 10000;
  // How long a connection may stay silent: an idle keep-alive, or a client sending nothing more of its request.
  int keep_alive_seconds = 30;
  // WebSocket punctuation streams (GET …:stream) open at once; beyond, the handshake gets 503. Each is one
  // descriptor on the streams' event thread, not a thread.
  size_t max_streams = 1000;
  // A stream with no message for this long is closed (with a close frame that says so).
  std::chrono::milliseconds stream_idle_timeout{120'000};
  // One JSON line per request: time, remote, method, path, status, bytes_in, bytes_out, latency_us, model, version.
  // Called after each reply is sent, on the server's threads, concurrently: it must be thread-safe.
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
