#include "serve/websocket_hub.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "halfserve/util/error.h"
#include "serve/request_threads.h"
#include "serve/websocket.h"

namespace halfserve {

namespace {

using Clock = std::chrono::steady_clock;
using websocket::Opcode;

// After our close frame is out, how long the client has to answer it (or hang up) before the socket is given back.
constexpr auto kCloseHandshakeWait = std::chrono::seconds(2);
// Unsent output beyond this stops reading (and starting messages) until the client has read some.
constexpr size_t kMaxUnsentBytes = size_t{1} << 20;
// Messages waiting for their turn beyond this (or a message's worth of bytes) stop reading until they are handled.
constexpr size_t kMaxQueuedMessages = 64;
// Bytes read from one socket per wake-up, so one fast client cannot hold the event thread.
constexpr size_t kReadChunk = 64 << 10;
constexpr size_t kMaxReadPerWakeup = 4 * kReadChunk;
// The epoll data of the hub's own wake-up descriptor; connections have ids from 1.
constexpr uint64_t kWakeId = 0;

std::string seconds_text(std::chrono::milliseconds duration) {
  const auto count = duration.count();
  if (count % 1000 == 0) return std::to_string(count / 1000) + " s";
  return std::to_string(count) + " ms";
}

}  // namespace

class WebSocketHub::Reservation {
 public:
  explicit Reservation(std::atomic<size_t>& open) : open_(open) {}
  ~Reservation() { --open_; }

 private:
  std::atomic<size_t>& open_;
};

namespace {

// One upgraded connection, as the event thread sees it (only that thread touches it).
struct Connection {
  uint64_t id = 0;
  int fd = -1;
  std::function<void()> release;
  std::shared_ptr<WebSocketHub::Reservation> reservation;
  std::shared_ptr<WebSocketSession> session;
  websocket::FrameParser parser;
  std::deque<std::pair<std::string, bool>> queued;  // data messages waiting for a worker: (payload, text)
  size_t queued_bytes = 0;
  bool busy = false;  // a message is with a worker
  std::string out;    // frames not yet written
  size_t out_sent = 0;
  bool close_sent = false;      // our close frame is queued: no more data frames, no more messages started
  bool close_received = false;  // the client's close frame has arrived
  std::optional<websocket::Failure> close_when_done;  // stop() while busy: close once the message's reply is out
  Clock::time_point last_message = Clock::now();
  Clock::time_point close_deadline;
  uint32_t events = 0;  // the epoll interest now

  explicit Connection(size_t max_message_bytes) : parser(max_message_bytes) {}
  size_t unsent() const { return out.size() - out_sent; }
};

}  // namespace

class WebSocketHub::Impl {
 public:
  explicit Impl(const WebSocketHubOptions& options);
  ~Impl();

  void adopt(UpgradedSocket socket, std::shared_ptr<Reservation> reservation, std::shared_ptr<WebSocketSession> session);
  void stop();
  bool stopping() const { return stopping_; }

 private:
  struct Completion {
    uint64_t id = 0;
    std::vector<std::string> replies;
    bool failed = false;
  };
  struct Adoption {
    UpgradedSocket socket;
    std::shared_ptr<Reservation> reservation;
    std::shared_ptr<WebSocketSession> session;
  };

  void run();
  void wake();
  void take_adoptions();
  void take_completions();
  void on_ready(Connection& connection, uint32_t events);
  void read(Connection& connection);
  void handle(Connection& connection, websocket::Message message);
  void start_next(Connection& connection);
  void queue_close(Connection& connection, uint16_t code, const std::string& reason);
  void flush(Connection& connection);
  void update_interest(Connection& connection);
  bool has_room(const Connection& connection) const {
    return connection.queued_bytes < options_.max_message_bytes && connection.queued.size() < kMaxQueuedMessages &&
           connection.unsent() < kMaxUnsentBytes;
  }
  void release(uint64_t id);
  int check_deadlines();  // acts on expired ones; returns the epoll timeout (ms) until the next
  void begin_stop();
  std::vector<uint64_t> connection_ids() const;  // to visit connections that a step may give back

  const WebSocketHubOptions& options_;
  RequestThreads workers_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  uint64_t next_id_ = 1;
  std::mutex mutex_;  // guards what other threads hand to the event thread
  std::vector<Adoption> adoptions_;
  std::vector<Completion> completions_;
  std::atomic<bool> stopping_{false};
  bool exited_ = false;  // the event thread is gone: adopt() closes by itself
  bool stop_begun_ = false;  // (event thread) every connection has been told
  std::thread thread_;
};

WebSocketHub::Impl::Impl(const WebSocketHubOptions& options)
    : options_(options), workers_(std::max<size_t>(1, options.worker_threads)) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) throw Error(std::string("WebSocket event loop: ") + std::strerror(errno));
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeId;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event);
  thread_ = std::thread([this] { run(); });
}

WebSocketHub::Impl::~Impl() {
  stop();
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void WebSocketHub::Impl::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t written = ::write(wake_fd_, &one, sizeof one);
}

void WebSocketHub::Impl::adopt(UpgradedSocket socket, std::shared_ptr<Reservation> reservation,
                               std::shared_ptr<WebSocketSession> session) {
  {
    std::lock_guard lock(mutex_);
    if (!exited_) {
      adoptions_.push_back({std::move(socket), std::move(reservation), std::move(session)});
      wake();
      return;
    }
  }
  // The event thread is gone: say why in a close frame (a best-effort write, the socket is fresh) and give it back.
  const std::string close = websocket::frame(Opcode::close, websocket::close_payload(websocket::close_code::going_away,
                                                                                     "the server is shutting down"));
  [[maybe_unused]] const ssize_t sent = ::send(socket.fd, close.data(), close.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  socket.release();
}

void WebSocketHub::Impl::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    wake();
  }
  if (thread_.joinable()) thread_.join();
  workers_.shutdown();
}

void WebSocketHub::Impl::run() {
  std::vector<epoll_event> events(256);
  for (;;) {
    take_adoptions();
    take_completions();
    {
      std::lock_guard lock(mutex_);
      if (stopping_ && !stop_begun_) {
        stop_begun_ = true;
        begin_stop();
      }
      if (stopping_ && connections_.empty() && adoptions_.empty()) {
        exited_ = true;
        return;
      }
    }
    const int timeout = check_deadlines();
    const int ready = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
    for (int i = 0; i < ready; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kWakeId) {
        uint64_t count = 0;
        [[maybe_unused]] const ssize_t got = ::read(wake_fd_, &count, sizeof count);
        continue;
      }
      const auto found = connections_.find(id);
      if (found != connections_.end()) on_ready(*found->second, events[i].events);
    }
  }
}

std::vector<uint64_t> WebSocketHub::Impl::connection_ids() const {
  std::vector<uint64_t> ids;
  ids.reserve(connections_.size());
  for (const auto& entry : connections_) ids.push_back(entry.first);
  return ids;
}

// Each connection's message in progress finishes and its reply is sent; what waits behind it is dropped.
void WebSocketHub::Impl::begin_stop() {
  const websocket::Failure going_away{websocket::close_code::going_away, "the server is shutting down"};
  for (const uint64_t id : connection_ids()) {
    Connection& connection = *connections_.at(id);
    connection.queued.clear();
    connection.queued_bytes = 0;
    if (connection.close_sent) continue;
    if (connection.busy) {
      connection.close_when_done = going_away;
      continue;
    }
    queue_close(connection, going_away.code, going_away.reason);
    flush(connection);
  }
}

void WebSocketHub::Impl::take_adoptions() {
  std::vector<Adoption> adopted;
  {
    std::lock_guard lock(mutex_);
    adopted.swap(adoptions_);
  }
  for (Adoption& adoption : adopted) {
    auto connection = std::make_unique<Connection>(options_.max_message_bytes);
    connection->id = next_id_++;
    connection->fd = adoption.socket.fd;
    connection->release = std::move(adoption.socket.release);
    connection->reservation = std::move(adoption.reservation);
    connection->session = std::move(adoption.session);
    const int flags = fcntl(connection->fd, F_GETFL);
    if (flags >= 0) fcntl(connection->fd, F_SETFL, flags | O_NONBLOCK);
    epoll_event event{};
    event.events = connection->events = EPOLLIN;
    event.data.u64 = connection->id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, connection->fd, &event) != 0) {
      connection->release();
      continue;
    }
    Connection& ref = *connection;
    connections_.emplace(ref.id, std::move(connection));
    if (stop_begun_) queue_close(ref, websocket::close_code::going_away, "the server is shutting down");
    // What the client sent right behind its handshake is read as if it had just arrived.
    std::vector<websocket::Message> messages;
    const bool parsed = ref.parser.feed(adoption.socket.early_bytes, messages);
    for (auto& message : messages) handle(ref, std::move(message));
    if (!parsed && !ref.close_sent) queue_close(ref, ref.parser.failure()->code, ref.parser.failure()->reason);
    flush(ref);
  }
}

void WebSocketHub::Impl::take_completions() {
  std::vector<Completion> completed;
  {
    std::lock_guard lock(mutex_);
    completed.swap(completions_);
  }
  for (Completion& completion : completed) {
    const auto found = connections_.find(completion.id);
    if (found == connections_.end()) continue;  // the client went away meanwhile: nobody to tell
    Connection& connection = *found->second;
    connection.busy = false;
    connection.last_message = Clock::now();
    if (!connection.close_sent) {
      if (completion.failed) {
        queue_close(connection, websocket::close_code::internal_error, "internal error while handling a message");
      } else {
        for (const std::string& reply : completion.replies) connection.out += websocket::frame(Opcode::text, reply);
      }
    }
    if (connection.close_when_done && !connection.close_sent) {
      const websocket::Failure why = *connection.close_when_done;
      queue_close(connection, why.code, why.reason);
    }
    start_next(connection);
    flush(connection);
  }
}

void WebSocketHub::Impl::on_ready(Connection& connection, uint32_t events) {
  const uint64_t id = connection.id;
  if ((events & EPOLLOUT) != 0) {
    flush(connection);
    if (connections_.count(id) == 0) return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) read(connection);
}

void WebSocketHub::Impl::read(Connection& connection) {
  const uint64_t id = connection.id;
  char buffer[kReadChunk];
  for (size_t total = 0; total < kMaxReadPerWakeup;) {
    const ssize_t n = ::recv(connection.fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      release(id);  // the client hung up (or the connection broke): nothing more can be said
      return;
    }
    if (n < 0) break;
    total += static_cast<size_t>(n);
    if (connection.parser.failure()) continue;  // failed: wait for the client's end, ignoring what it sends
    std::vector<websocket::Message> messages;
    const bool parsed = connection.parser.feed(std::string_view(buffer, static_cast<size_t>(n)), messages);
    for (auto& message : messages) handle(connection, std::move(message));
    if (connections_.count(id) == 0) return;
    if (!parsed && !connection.close_sent)
      queue_close(connection, connection.parser.failure()->code, connection.parser.failure()->reason);
    if (connection.close_sent && connection.close_received) break;
    if (!has_room(connection)) break;
  }
  flush(connection);
}

void WebSocketHub::Impl::handle(Connection& connection, websocket::Message message) {
  switch (message.opcode) {
    case Opcode::text:
    case Opcode::binary:
      if (connection.close_sent || connection.close_received) return;  // closing: no new work
      connection.last_message = Clock::now();
      connection.queued_bytes += message.payload.size();
      connection.queued.emplace_back(std::move(message.payload), message.opcode == Opcode::text);
      start_next(connection);
      return;
    case Opcode::ping:
      if (!connection.close_sent) connection.out += websocket::frame(Opcode::pong, message.payload);
      return;
    case Opcode::pong: return;
    case Opcode::close: {
      connection.close_received = true;
      connection.queued.clear();
      connection.queued_bytes = 0;
      if (connection.close_sent) return;  // the answer to ours: flush() gives the socket back
      const auto status = websocket::read_close_payload(message.payload);
      if (!status) queue_close(connection, websocket::close_code::protocol_error, "malformed close frame");
      else queue_close(connection, status->code == 1005 ? websocket::close_code::normal : status->code, "");
      return;
    }
    case Opcode::continuation: return;  // never a whole message
  }
}

void WebSocketHub::Impl::start_next(Connection& connection) {
  if (connection.busy || connection.queued.empty() || connection.close_sent || connection.unsent() >= kMaxUnsentBytes)
    return;
  // Plain variables, not a structured binding: lambdas may not capture those before C++20 (clang 14 refuses).
  std::string payload = std::move(connection.queued.front().first);
  const bool text = connection.queued.front().second;
  connection.queued.pop_front();
  connection.queued_bytes -= payload.size();
  connection.busy = true;
  const uint64_t id = connection.id;
  auto job = [this, id, session = connection.session, payload = std::move(payload), text]() mutable {
    Completion completion;
    completion.id = id;
    try {
      completion.replies = session->on_message(std::move(payload), text);
    } catch (...) {
      completion.failed = true;
    }
    std::lock_guard lock(mutex_);
    completions_.push_back(std::move(completion));
    wake();
  };
  if (!workers_.enqueue(std::move(job))) {  // the workers are shutting down: only after the event thread has gone
    connection.busy = false;
    queue_close(connection, websocket::close_code::going_away, "the server is shutting down");
  }
}

void WebSocketHub::Impl::queue_close(Connection& connection, uint16_t code, const std::string& reason) {
  if (connection.close_sent) return;
  connection.close_sent = true;
  connection.close_deadline = Clock::now() + kCloseHandshakeWait;
  connection.queued.clear();
  connection.queued_bytes = 0;
  connection.out += websocket::frame(Opcode::close, websocket::close_payload(code, reason));
}

void WebSocketHub::Impl::flush(Connection& connection) {
  while (connection.unsent() > 0) {
    const ssize_t n = ::send(connection.fd, connection.out.data() + connection.out_sent, connection.unsent(),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      connection.out_sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    release(connection.id);  // broken: the client cannot be told anything more
    return;
  }
  if (connection.out_sent == connection.out.size()) {
    connection.out.clear();
    connection.out_sent = 0;
  } else if (connection.out_sent > connection.out.size() / 2) {
    connection.out.erase(0, connection.out_sent);
    connection.out_sent = 0;
  }
  // The closing handshake is complete once both close frames have passed: the server closes the TCP connection
  // first (RFC 6455 §7.1.1).
  if (connection.close_sent && connection.close_received && connection.unsent() == 0) {
    release(connection.id);
    return;
  }
  start_next(connection);
  update_interest(connection);
}

void WebSocketHub::Impl::update_interest(Connection& connection) {
  // Read while there is room for more input; once closing, read only to see the client's close or its hang-up.
  uint32_t wanted = (has_room(connection) || connection.close_sent) && !connection.close_received ? uint32_t{EPOLLIN} : 0;
  if (connection.unsent() > 0) wanted |= EPOLLOUT;
  if (wanted == connection.events) return;
  epoll_event event{};
  event.events = connection.events = wanted;
  event.data.u64 = connection.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, connection.fd, &event);
}

void WebSocketHub::Impl::release(uint64_t id) {
  const auto found = connections_.find(id);
  if (found == connections_.end()) return;
  Connection& connection = *found->second;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, connection.fd, nullptr);
  connection.release();  // the HTTP server closes the descriptor; its reservation goes with the connection
  connections_.erase(found);
}

int WebSocketHub::Impl::check_deadlines() {
  const auto now = Clock::now();
  auto next = now + std::chrono::hours(1);
  const size_t open_before = connections_.size();
  for (const uint64_t id : connection_ids()) {
    Connection& connection = *connections_.at(id);
    if (connection.close_sent) {
      if (connection.close_deadline <= now) release(id);  // the client never answered our close
      else next = std::min(next, connection.close_deadline);
      continue;
    }
    if (connection.busy || !connection.queued.empty()) continue;  // working: not idle
    const auto idle_deadline = connection.last_message + options_.idle_timeout;
    if (idle_deadline > now) {
      next = std::min(next, idle_deadline);
      continue;
    }
    queue_close(connection, websocket::close_code::normal,
                "no message for " + seconds_text(options_.idle_timeout) + ": the idle stream is closed");
    next = std::min(next, connection.close_deadline);
    flush(connection);
  }
  if (connections_.size() < open_before) return 0;  // some were given back: the loop looks again (stop() may be done)
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
  return static_cast<int>(std::clamp<int64_t>(wait, 1, 60'000));
}

WebSocketHub::WebSocketHub(WebSocketHubOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {}

WebSocketHub::~WebSocketHub() { stop(); }

std::shared_ptr<WebSocketHub::Reservation> WebSocketHub::reserve() {
  if (impl_->stopping()) return nullptr;
  size_t open = open_.load();
  do {
    if (open >= options_.max_connections) return nullptr;
  } while (!open_.compare_exchange_weak(open, open + 1));
  return std::make_shared<Reservation>(open_);
}

void WebSocketHub::adopt(UpgradedSocket socket, std::shared_ptr<Reservation> reservation,
                         std::shared_ptr<WebSocketSession> session) {
  impl_->adopt(std::move(socket), std::move(reservation), std::move(session));
}

void WebSocketHub::stop() { impl_->stop(); }

}  // namespace halfserve
