#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "serve/http_front.h"

namespace halfserve {

// The application side of one WebSocket connection. Its calls run on the hub's worker threads, one at a time per
// connection, in the order the messages arrived, so it needs no lock of its own.
class WebSocketSession {
 public:
  virtual ~WebSocketSession() = default;
  // A whole data message (`text`: a text message, else binary); returns the text messages to send back.
  virtual std::vector<std::string> on_message(std::string message, bool text) = 0;
};

struct WebSocketHubOptions {
  size_t max_connections = 1000;             // open at once; reserve() refuses more
  std::chrono::milliseconds idle_timeout{120'000};  // no data message for this long: closed with a reason
  size_t max_message_bytes = size_t{1} << 20;  // a longer message closes the connection with 1009
  size_t worker_threads = 256;               // messages handled at once (each may block on its model's batch)
};

// Every upgraded WebSocket connection on one event thread (epoll): a connection costs a descriptor and its buffers,
// never a thread. Complete messages go to a worker pool, one at a time per connection; their replies come back to
// the event thread, which writes them. Bounded: connections (reserve()), message size (1009), an idle timeout, and
// per connection at most about a message's worth (or 64 messages) of queued input and 1 MiB of unsent output
// (beyond either, the socket is not read until the backlog drains, so a fast or non-reading client slows itself
// down and nobody else).
// Pings are answered, a client's close is echoed, and stop() closes every connection with 1001.
class WebSocketHub {
 public:
  explicit WebSocketHub(WebSocketHubOptions options);
  ~WebSocketHub();  // stop()
  WebSocketHub(const WebSocketHub&) = delete;
  WebSocketHub& operator=(const WebSocketHub&) = delete;

  // A place for one more connection, held until the connection it is adopted for closes (or the reservation is
  // dropped unused). Null at the limit or once stopping.
  class Reservation;
  std::shared_ptr<Reservation> reserve();

  // Takes over an upgraded connection. Called once stopping, the connection is closed with 1001 at once.
  void adopt(UpgradedSocket socket, std::shared_ptr<Reservation> reservation, std::shared_ptr<WebSocketSession> session);

  // Connections open now (adopted or reserved).
  size_t open_connections() const { return open_; }
  const WebSocketHubOptions& options() const { return options_; }

  // Messages being handled finish and their replies are sent; each connection then gets a close frame (1001) and
  // a moment to answer it; the connections are given back. Returns once all are.
  void stop();

  class Impl;

 private:
  WebSocketHubOptions options_;
  std::atomic<size_t> open_{0};
  std::unique_ptr<Impl> impl_;
};

}  // namespace halfserve
