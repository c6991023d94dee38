#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "halfserve/serve/serving_error.h"

namespace halfserve {

// An HTTP-level failure with a status of its own (405, 413, 415) and the code metrics count it under.
class HttpError : public ServingError {
 public:
  HttpError(int status, ServingCode code, const std::string& message) : ServingError(code, message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct HttpRequest {
  std::string method;
  std::string path;    // without the query string
  std::string remote;  // the peer's address
  std::string body;    // a POST's decoded body (other methods' bodies are read and dropped)
  // The headers HttpFrontOptions::request_headers names, those the request sent (name as listed there, value).
  std::vector<std::pair<std::string, std::string>> headers;
  size_t body_bytes = 0;          // decoded bytes received, kept or not
  std::exception_ptr body_error;  // an HttpError (400, 413, 415) when the body could not be taken
};

// The value of a header HttpFrontOptions::request_headers names; "" when the request did not send it.
std::string request_header(const HttpRequest& request, std::string_view name);

// A connection handed over after a protocol upgrade (status 101): its socket (still owned by the transport, which
// closes it once `release` is called), bytes the client sent after its request, and the call that gives it back.
struct UpgradedSocket {
  int fd = -1;
  std::string early_bytes;
  std::function<void()> release;  // call exactly once, from any thread; the descriptor must not be used after
};

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Allow on a 405
  // With status 101 (and an Upgrade header; libmicrohttpd adds Connection: Upgrade): takes the connection once the
  // reply has been sent. Called on an event thread, so it must not block; dropped unused if the connection ends
  // first.
  std::function<void(UpgradedSocket)> upgrade;
  // For the access log: the model and version the request was answered by, when it named one.
  std::string model;
  std::optional<int64_t> version;
};

struct HttpFrontOptions {
  std::string host = "0.0.0.0";
  int port = 0;  // 0: any free port
  size_t max_body_bytes = 64 << 20;
  size_t request_threads = 1000;    // requests handled at once (started on demand); more wait in turn
  size_t max_connections = 10000;   // open connections served; up to 256 more get 503 and are closed
  unsigned idle_timeout_seconds = 30;  // a connection with no traffic for this long is closed
  // Request headers the handler reads (HttpRequest::headers); others stay with the transport.
  std::vector<std::string> request_headers;
  // Runs on a request thread; what it throws becomes a 500.
  std::function<HttpReply(const HttpRequest&)> handle;
  // After the reply has been sent (or the connection lost), with the time since the request's headers arrived.
  std::function<void(const HttpRequest&, const HttpReply&, std::chrono::microseconds)> completed;
};

// The HTTP/1.1 transport under the REST API, on libmicrohttpd: two event threads watch every connection with
// epoll, so idle keep-alive and slow (slowloris) connections cost a descriptor and a little memory, never a
// thread; a request whose body is complete goes to a request thread (its connection suspended meanwhile) and its
// reply goes back through the event loop. Bodies are bounded and decompressed as they stream (HttpBody). A reply
// may upgrade its connection to another protocol (WebSocket): the socket then leaves HTTP for good.
class HttpFront {
 public:
  explicit HttpFront(HttpFrontOptions options);
  ~HttpFront();  // stop()
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  // Binds and serves. Throws Error naming the address when it cannot bind (or was already started).
  void start();
  int port() const;
  // Stops accepting, lets requests being handled finish and send their replies, then closes every connection.
  void stop();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace halfserve
