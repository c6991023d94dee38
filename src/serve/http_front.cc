#include "serve/http_front.h"

#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

#include "halfserve/util/error.h"
#include "serve/http_body.h"
#include "serve/request_threads.h"

namespace halfserve {

namespace {

using Clock = std::chrono::steady_clock;

// Parsing is cheap next to the model: two event threads keep up with any load these requests bring.
constexpr unsigned kEventThreads = 2;
// Per-connection memory for the request line and headers (and read/write buffers): a longer request line gets
// 414 and longer headers 431, before anything is routed. cpp-httplib, before it, allowed 8 KB of URI.
constexpr size_t kConnectionMemoryBytes = 16 << 10;
// A body declared this many times over the limit is refused before it is read, closing the connection; smaller
// excess is read to its end (and dropped) so the client gets its 413 on a connection that stays usable.
constexpr size_t kReadExcessFactor = 4;
// Connections past max_connections still get a reply, 503 with Retry-After and then closed, up to this many more;
// only beyond that does libmicrohttpd close new connections unanswered. A client then learns why it was refused.
constexpr size_t kRefusedConnections = 256;
// The socket context of a connection that arrived past the cap (any unique address would do).
char over_capacity_marker;

std::string header(MHD_Connection* connection, const char* name) {
  const char* value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
  return value != nullptr ? value : "";
}

std::string peer_address(MHD_Connection* connection) {
  const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (info == nullptr || info->client_addr == nullptr) return "";
  const sockaddr* address = info->client_addr;
  const socklen_t length = address->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  char host[NI_MAXHOST] = {};
  if (getnameinfo(address, length, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) return "";
  return host;
}

bool starts_with_ignoring_case(const std::string& text, const char* prefix) {
  return strncasecmp(text.c_str(), prefix, std::strlen(prefix)) == 0;
}

// A listening socket of our own: SO_REUSEADDR without SO_REUSEPORT (which would let a second server take half the
// traffic) and the system's largest backlog, so hundreds of clients connecting at once are not dropped.
int listen_on(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  const std::string where = host + ":" + std::to_string(port);
  if (const int failed = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &addresses); failed != 0)
    throw Error("REST API cannot listen on " + where + ": " + gai_strerror(failed));
  int saved_errno = 0;
  int socket_fd = -1;
  for (addrinfo* address = addresses; address != nullptr && socket_fd < 0; address = address->ai_next) {
    socket_fd = ::socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, address->ai_protocol);
    if (socket_fd < 0) continue;
    const int yes = 1;
    setsockopt(socket_fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(socket_fd, address->ai_addr, address->ai_addrlen) == 0 && ::listen(socket_fd, SOMAXCONN) == 0) break;
    saved_errno = errno;
    ::close(socket_fd);
    socket_fd = -1;
  }
  freeaddrinfo(addresses);
  if (socket_fd < 0) throw Error("REST API cannot listen on " + where + ": " + std::strerror(saved_errno));
  return socket_fd;
}

int bound_port(int socket_fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getsockname(socket_fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(address).sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in&>(address).sin_port);
}

// Every connection is a descriptor: lift the soft limit (often 1024) to the hard one so the connection cap, not
// the descriptor limit, decides how many clients may wait.
void raise_descriptor_limit(size_t wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= wanted + 64) return;
  limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, wanted + 64);
  setrlimit(RLIMIT_NOFILE, &limit);
}

}  // namespace

std::string request_header(const HttpRequest& request, std::string_view name) {
  for (const auto& [header_name, value] : request.headers)
    if (header_name == name) return value;
  return "";
}

// One request on a connection, from its headers to its reply.
struct Exchange {
  enum class Stage { reading, handling, replying, answered };
  HttpRequest request;
  std::unique_ptr<HttpBody> body;
  bool multipart = false;
  Clock::time_point start = Clock::now();
  std::atomic<Stage> stage{Stage::reading};
  HttpReply reply;
  bool dispatched = false;  // counted in active_ until completed
};

class HttpFront::Impl {
 public:
  explicit Impl(HttpFrontOptions options) : options_(std::move(options)), threads_(options_.request_threads) {}

  void start();
  void stop();
  int port() const { return port_; }

 private:
  static MHD_Result on_request(void* self, MHD_Connection* connection, const char* url, const char* method,
                               const char* version, const char* upload_data, size_t* upload_size, void** state);
  static void on_completed(void* self, MHD_Connection* connection, void** state, MHD_RequestTerminationCode why);
  static void on_connection(void* self, MHD_Connection* connection, void** socket_context,
                            MHD_ConnectionNotificationCode event);
  static void on_upgraded(void* self, MHD_Connection* connection, void* state, const char* extra_in,
                          size_t extra_in_size, MHD_socket socket, MHD_UpgradeResponseHandle* handle);

  MHD_Result begin(MHD_Connection* connection, const char* url, const char* method, void** state);
  MHD_Result refuse(MHD_Connection* connection, Exchange& exchange, std::string message);
  void finish_body(Exchange& exchange);
  void dispatch(MHD_Connection* connection, Exchange& exchange);
  MHD_Result send(MHD_Connection* connection, const HttpReply& reply);
  MHD_Result send_upgrade(MHD_Connection* connection, const HttpReply& reply);
  void finish_dispatch(Exchange& exchange);
  HttpReply handle_safely(const HttpRequest& request);

  HttpFrontOptions options_;
  RequestThreads threads_;
  MHD_Daemon* daemon_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex active_mutex_;
  std::condition_variable active_done_;
  size_t active_ = 0;
  std::atomic<size_t> open_connections_{0};
  std::mutex lifecycle_mutex_;
  bool started_ = false;
  bool stopped_ = false;
};

void HttpFront::Impl::start() {
  std::lock_guard lock(lifecycle_mutex_);
  if (started_) throw Error("the REST server was already started");
  listen_fd_ = listen_on(options_.host, options_.port);
  port_ = bound_port(listen_fd_);
  raise_descriptor_limit(options_.max_connections + kRefusedConnections);
  daemon_ = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE, 0, nullptr, nullptr, &Impl::on_request, this,
      MHD_OPTION_LISTEN_SOCKET, listen_fd_, MHD_OPTION_THREAD_POOL_SIZE, kEventThreads,
      MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned>(options_.max_connections + kRefusedConnections),
      MHD_OPTION_NOTIFY_CONNECTION, &Impl::on_connection, this,
      MHD_OPTION_CONNECTION_TIMEOUT, options_.idle_timeout_seconds,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemoryBytes,
      MHD_OPTION_NOTIFY_COMPLETED, &Impl::on_completed, this, MHD_OPTION_END);
  if (daemon_ == nullptr) {
    ::close(listen_fd_);
    throw Error("REST API cannot start serving on " + options_.host + ":" + std::to_string(port_));
  }
  started_ = true;
}

void HttpFront::Impl::stop() {
  std::lock_guard lock(lifecycle_mutex_);
  if (!started_ || stopped_) return;
  stopped_ = true;
  stopping_ = true;
  const MHD_socket listening = MHD_quiesce_daemon(daemon_);  // no new connections
  if (listening != MHD_INVALID_SOCKET) ::close(listening);
  {
    // Requests being handled finish and send their replies; a suspended connection must not meet
    // MHD_stop_daemon.
    std::unique_lock active_lock(active_mutex_);
    active_done_.wait(active_lock, [&] { return active_ == 0; });
  }
  MHD_stop_daemon(daemon_);  // closes every connection, idle keep-alive ones included
  daemon_ = nullptr;
  threads_.shutdown();
}

MHD_Result HttpFront::Impl::on_request(void* self, MHD_Connection* connection, const char* url, const char* method,
                                       const char*, const char* upload_data, size_t* upload_size, void** state) {
  Impl& impl = *static_cast<Impl*>(self);
  if (*state == nullptr) return impl.begin(connection, url, method, state);
  Exchange& exchange = *static_cast<Exchange*>(*state);
  switch (exchange.stage.load()) {
    case Exchange::Stage::reading:
      if (*upload_size > 0) {
        exchange.body->append(upload_data, *upload_size);
        exchange.request.body_bytes = exchange.body->decoded_bytes();
        *upload_size = 0;
        return MHD_YES;
      }
      impl.finish_body(exchange);
      impl.dispatch(connection, exchange);
      return MHD_YES;
    case Exchange::Stage::handling:
      return MHD_YES;  // woken before its reply is ready: nothing to do yet
    case Exchange::Stage::replying:
      exchange.stage = Exchange::Stage::answered;
      return impl.send(connection, exchange.reply);
    case Exchange::Stage::answered:
      *upload_size = 0;  // answered early (413, 503): whatever else arrives is dropped
      return MHD_YES;
  }
  return MHD_NO;
}

MHD_Result HttpFront::Impl::begin(MHD_Connection* connection, const char* url, const char* method, void** state) {
  auto exchange = std::make_unique<Exchange>();
  exchange->request.method = method;
  exchange->request.path = url;
  exchange->request.remote = peer_address(connection);
  for (const std::string& name : options_.request_headers) {
    const char* value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name.c_str());
    if (value != nullptr) exchange->request.headers.emplace_back(name, value);
  }
  exchange->multipart = starts_with_ignoring_case(header(connection, MHD_HTTP_HEADER_CONTENT_TYPE), "multipart/");
  exchange->body = std::make_unique<HttpBody>(header(connection, MHD_HTTP_HEADER_CONTENT_ENCODING),
                                              exchange->request.method == "POST" && !exchange->multipart,
                                              options_.max_body_bytes);
  Exchange& ref = *exchange;
  *state = exchange.release();
  if (stopping_) return refuse(connection, ref, "the server is shutting down");
  const MHD_ConnectionInfo* socket = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  if (socket != nullptr && socket->socket_context == &over_capacity_marker)
    return refuse(connection, ref, "the server holds its limit of " + std::to_string(options_.max_connections) +
                                       " open connections: retry later");
  const std::string declared = header(connection, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (!declared.empty() && std::strtoull(declared.c_str(), nullptr, 10) / kReadExcessFactor > options_.max_body_bytes) {
    ref.request.body_error = std::make_exception_ptr(
        HttpError(413, ServingCode::resource_exhausted,
                  "request body is larger than the limit of " + std::to_string(options_.max_body_bytes) + " bytes"));
    ref.reply = handle_safely(ref.request);  // routed like any request (so metrics count it): answers with the 413
    ref.stage = Exchange::Stage::answered;
    return send(connection, ref.reply);
  }
  return MHD_YES;
}

// 503 and close: the server cannot take this request now, but a later one (elsewhere, or here) may succeed.
MHD_Result HttpFront::Impl::refuse(MHD_Connection* connection, Exchange& exchange, std::string message) {
  exchange.reply.status = 503;
  exchange.reply.body = nlohmann::json({{"error", std::move(message)}}).dump();
  exchange.reply.headers = {{MHD_HTTP_HEADER_CONNECTION, "close"}, {MHD_HTTP_HEADER_RETRY_AFTER, "1"}};
  exchange.stage = Exchange::Stage::answered;
  return send(connection, exchange.reply);
}

void HttpFront::Impl::on_connection(void* self, MHD_Connection*, void** socket_context,
                                    MHD_ConnectionNotificationCode event) {
  Impl& impl = *static_cast<Impl*>(self);
  if (event == MHD_CONNECTION_NOTIFY_STARTED) {
    if (impl.open_connections_.fetch_add(1) >= impl.options_.max_connections) *socket_context = &over_capacity_marker;
  } else if (event == MHD_CONNECTION_NOTIFY_CLOSED) {
    impl.open_connections_.fetch_sub(1);
  }
}

void HttpFront::Impl::finish_body(Exchange& exchange) {
  HttpRequest& request = exchange.request;
  request.body_bytes = exchange.body->decoded_bytes();
  if (const int status = exchange.body->problem(); status != 0) {
    const ServingCode code = status == 413 ? ServingCode::resource_exhausted : ServingCode::invalid_argument;
    request.body_error = std::make_exception_ptr(HttpError(status, code, exchange.body->message()));
  } else if (exchange.multipart) {
    request.body_error =
        std::make_exception_ptr(HttpError(415, ServingCode::invalid_argument, "multipart bodies are not accepted: send JSON"));
  } else {
    request.body = std::move(exchange.body->text());
  }
  exchange.body.reset();
}

void HttpFront::Impl::dispatch(MHD_Connection* connection, Exchange& exchange) {
  {
    std::lock_guard lock(active_mutex_);
    ++active_;
  }
  exchange.dispatched = true;
  exchange.stage = Exchange::Stage::handling;
  MHD_suspend_connection(connection);
  const bool queued = threads_.enqueue([this, connection, &exchange] {
    exchange.reply = handle_safely(exchange.request);
    exchange.stage = Exchange::Stage::replying;
    MHD_resume_connection(connection);
  });
  if (!queued) {  // only while shutting down; a suspended connection must always be resumed
    exchange.reply.status = 503;
    exchange.reply.body = R"({"error":"the server is shutting down"})";
    exchange.stage = Exchange::Stage::replying;
    MHD_resume_connection(connection);
  }
}

HttpReply HttpFront::Impl::handle_safely(const HttpRequest& request) {
  try {
    return options_.handle(request);
  } catch (const std::exception& e) {
    HttpReply reply;
    reply.status = 500;
    reply.body = nlohmann::json({{"error", std::string("internal error: ") + e.what()}})
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return reply;
  } catch (...) {
    // Whatever was thrown, the connection gets a reply and is resumed: a suspended one would hold stop() forever.
    HttpReply reply;
    reply.status = 500;
    reply.body = R"({"error":"internal error"})";
    return reply;
  }
}

MHD_Result HttpFront::Impl::send(MHD_Connection* connection, const HttpReply& reply) {
  if (reply.upgrade) return send_upgrade(connection, reply);
  MHD_Response* response = MHD_create_response_from_buffer(reply.body.size(), const_cast<char*>(reply.body.data()),
                                                            MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, reply.content_type.c_str());
  for (const auto& [name, value] : reply.headers) MHD_add_response_header(response, name.c_str(), value.c_str());
  const bool closes = std::any_of(reply.headers.begin(), reply.headers.end(),
                                  [](const auto& entry) { return entry.first == MHD_HTTP_HEADER_CONNECTION; });
  if (stopping_ && !closes) MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
  const MHD_Result queued = MHD_queue_response(connection, static_cast<unsigned>(reply.status), response);
  MHD_destroy_response(response);
  return queued;
}

// 101 with the reply's headers; once it is sent, on_upgraded hands the socket to reply.upgrade. libmicrohttpd takes
// an upgrade on HTTP/1.1 only: an HTTP/1.0 request gets 400 instead.
MHD_Result HttpFront::Impl::send_upgrade(MHD_Connection* connection, const HttpReply& reply) {
  MHD_Response* response = MHD_create_response_for_upgrade(&Impl::on_upgraded, this);
  if (response == nullptr) return MHD_NO;
  for (const auto& [name, value] : reply.headers) MHD_add_response_header(response, name.c_str(), value.c_str());
  const MHD_Result queued = MHD_queue_response(connection, MHD_HTTP_SWITCHING_PROTOCOLS, response);
  MHD_destroy_response(response);
  if (queued == MHD_YES) return queued;
  HttpReply refused;
  refused.status = 400;
  refused.body = R"({"error":"a protocol upgrade needs HTTP/1.1"})";
  refused.headers = {{MHD_HTTP_HEADER_CONNECTION, "close"}};
  return send(connection, refused);
}

void HttpFront::Impl::on_upgraded(void* self, MHD_Connection*, void* state, const char* extra_in, size_t extra_in_size,
                                  MHD_socket socket, MHD_UpgradeResponseHandle* handle) {
  Impl& impl = *static_cast<Impl*>(self);
  Exchange& exchange = *static_cast<Exchange*>(state);
  // As far as HTTP goes the exchange is over: stop() must not wait for the upgraded protocol to end.
  impl.finish_dispatch(exchange);
  const std::function<void(UpgradedSocket)> take = std::move(exchange.reply.upgrade);
  exchange.reply.upgrade = nullptr;
  UpgradedSocket upgraded;
  upgraded.fd = socket;
  upgraded.early_bytes.assign(extra_in != nullptr ? extra_in : "", extra_in != nullptr ? extra_in_size : 0);
  upgraded.release = [handle] { MHD_upgrade_action(handle, MHD_UPGRADE_ACTION_CLOSE); };
  try {
    take(std::move(upgraded));
  } catch (...) {
    MHD_upgrade_action(handle, MHD_UPGRADE_ACTION_CLOSE);  // whoever should have taken it did not: close it
  }
}

void HttpFront::Impl::finish_dispatch(Exchange& exchange) {
  if (!exchange.dispatched) return;
  exchange.dispatched = false;
  std::lock_guard lock(active_mutex_);
  if (--active_ == 0) active_done_.notify_all();
}

void HttpFront::Impl::on_completed(void* self, MHD_Connection*, void** state, MHD_RequestTerminationCode) {
  Impl& impl = *static_cast<Impl*>(self);
  std::unique_ptr<Exchange> exchange(static_cast<Exchange*>(*state));
  *state = nullptr;
  if (exchange == nullptr) return;
  if (impl.options_.completed) {
    try {
      impl.options_.completed(exchange->request, exchange->reply,
                              std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - exchange->start));
    } catch (...) {
      // A failing log sink must not fail the server.
    }
  }
  impl.finish_dispatch(*exchange);
}

HttpFront::HttpFront(HttpFrontOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpFront::~HttpFront() { stop(); }
void HttpFront::start() { impl_->start(); }
int HttpFront::port() const { return impl_->port(); }
void HttpFront::stop() { impl_->stop(); }

}  // namespace halfserve
