#include "halfserve/serve/rest_server.h"

#include <httplib.h>
#include <netdb.h>
#include <strings.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <thread>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/serve/predict_json.h"
#include "halfserve/serve/serving_error.h"
#include "serve/rest_model_json.h"
#include "serve/rest_punctuate.h"
#include "serve/rest_routes.h"

namespace halfserve {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::ordered_json;

// cpp-httplib gives every connection one thread for its whole life, and it waits for sockets with select(), which
// cannot watch descriptors past FD_SETSIZE (1024): more connection threads than that could never be served.
constexpr size_t kDefaultConnectionThreads = 1000;
// Requests one keep-alive connection may carry before the server closes it (cpp-httplib's default is 5, which
// would make busy clients reconnect all the time).
constexpr size_t kKeepAliveMaxRequests = 100000;
// Per read or write call, not per request: a slow client uploading a large body is fine as long as it keeps moving.
constexpr time_t kSocketTimeoutSeconds = 30;

constexpr const char* kJsonType = "application/json";
constexpr const char* kPrometheusType = "text/plain; version=0.0.4; charset=utf-8";

std::string json_text(const ordered_json& document) {
  return document.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

// An HTTP-level failure with a status of its own (405, 413, 415) and the code metrics count it under.
class HttpError : public ServingError {
 public:
  HttpError(int status, ServingCode code, const std::string& message) : ServingError(code, message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct Reply {
  int status = 200;
  ServingCode code = ServingCode::ok;
  std::string body;
  std::string content_type = kJsonType;
  std::string allow;  // the Allow header of a 405
};

Reply reply_with(int status, ServingCode code, std::string body, std::string content_type = kJsonType) {
  Reply reply;
  reply.status = status;
  reply.code = code;
  reply.body = std::move(body);
  reply.content_type = std::move(content_type);
  return reply;
}

Reply json_reply(std::string body) { return reply_with(200, ServingCode::ok, std::move(body)); }

Reply error_reply(const std::exception& error) {
  Reply reply;
  reply.code = serving_code_of(error);
  const auto* http = dynamic_cast<const HttpError*>(&error);
  reply.status = http != nullptr ? http->status() : http_status(reply.code);
  reply.body = json_text({{"error", error.what()}});
  return reply;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    case 415: return "unsupported content encoding";
    case 416: return "range not satisfiable";
    default: return status >= 500 ? "internal error" : "request failed";
  }
}

// Runs cpp-httplib's connection jobs. Threads start on demand, up to the limit, and then stay: a server that never
// sees more than a few connections never holds hundreds of threads. Beyond the limit, connections wait in turn.
class ConnectionThreads final : public httplib::TaskQueue {
 public:
  explicit ConnectionThreads(size_t max_threads) : max_threads_(max_threads) {}
  ~ConnectionThreads() override { shutdown(); }

  void enqueue(std::function<void()> job) override {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
    if (jobs_.size() > idle_ && threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { work(); });
        return;
      } catch (const std::system_error&) {
        // Out of threads: the connection waits for a running one, as beyond the limit.
      }
    }
    wake_.notify_one();
  }

  // Runs the queued jobs, then joins every thread.
  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_)
      if (thread.joinable()) thread.join();
  }

 private:
  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      ++idle_;
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      try {
        job();
      } catch (...) {
        // One connection's failure must never take the server down; the connection is gone either way.
      }
      lock.lock();
    }
  }

  size_t max_threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

// Exposes the listening socket, which cpp-httplib keeps protected, so its backlog can be raised.
class ListeningServer : public httplib::Server {
 public:
  socket_t listening_socket() const { return svr_sock_; }
};

std::optional<std::pair<std::string, int>> address_and_port(const sockaddr_storage& address, socklen_t length) {
  int port = 0;
  if (address.ss_family == AF_INET) port = ntohs(reinterpret_cast<const sockaddr_in&>(address).sin_port);
  else if (address.ss_family == AF_INET6) port = ntohs(reinterpret_cast<const sockaddr_in6&>(address).sin6_port);
  else return std::nullopt;
  char host[NI_MAXHOST] = {};
  // The same rendering cpp-httplib uses for Request::remote_addr.
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0)
    return std::nullopt;
  return std::pair{std::string(host), port};
}

// Which connections are inside a handler, by peer address. cpp-httplib only looks at a stop between requests, so
// an idle keep-alive connection would hold stop() for its whole keep-alive timeout; stop() instead shuts down
// reading on every idle connection of its port (the connection thread then sees end of stream and closes it),
// while connections inside a handler finish their request first.
class ConnectionActivity {
 public:
  class Busy {
   public:
    Busy(ConnectionActivity& activity, const httplib::Request& request)
        : activity_(activity), peer_(request.remote_addr + " " + std::to_string(request.remote_port)) {
      std::lock_guard lock(activity_.mutex_);
      activity_.busy_.insert(peer_);
    }
    ~Busy() {
      std::lock_guard lock(activity_.mutex_);
      activity_.busy_.erase(activity_.busy_.find(peer_));
    }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

   private:
    ConnectionActivity& activity_;
    std::string peer_;
  };

  // The process's sockets whose local port is `port` and that have a peer are this server's connections.
  void close_idle(int port) {
    std::lock_guard lock(mutex_);
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ignored)) {
      int fd = -1;
      try {
        fd = std::stoi(entry.path().filename().string());
      } catch (const std::exception&) {
        continue;
      }
      sockaddr_storage local{}, peer{};
      socklen_t local_length = sizeof local, peer_length = sizeof peer;
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) != 0) continue;
      const auto local_address = address_and_port(local, local_length);
      if (!local_address || local_address->second != port) continue;
      if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0) continue;
      const auto peer_address = address_and_port(peer, peer_length);
      if (!peer_address || busy_.count(peer_address->first + " " + std::to_string(peer_address->second)) != 0) continue;
      ::shutdown(fd, SHUT_RD);
    }
  }

 private:
  std::mutex mutex_;
  std::multiset<std::string> busy_;
};

// What the access log needs from the handler; the log line is written after the response, by cpp-httplib's logger,
// on the same connection thread.
struct AccessRecord {
  const httplib::Request* request = nullptr;  // the request the rest belongs to
  Clock::time_point start;
  size_t bytes_in = 0;
  std::string model;
  std::optional<int64_t> version;
};
thread_local AccessRecord current_access;

std::string utc_timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  const size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + length, sizeof text - length, ".%03dZ", static_cast<int>(millis));
  return text;
}

struct Body {
  std::string text;
  size_t bytes = 0;
};

bool is_chunked(const httplib::Request& request) {
  return strcasecmp(request.get_header_value("Transfer-Encoding").c_str(), "chunked") == 0;
}

// Reads the body (kept only when `keep`). Every request with a body is read to its end, whatever the reply, so that
// the next request on a keep-alive connection starts where this one ends (stopping early would leave the rest of
// the upload to be parsed as requests). cpp-httplib skips a body whose Content-Length is over the limit; chunked
// and compressed bodies are counted here after decoding, and beyond the limit read on without being kept.
Body read_body(const httplib::Request& request, httplib::Response& response, const httplib::ContentReader* reader,
               bool keep, size_t limit) {
  Body body;
  // A request with neither header has no body (RFC 9112 6.3); cpp-httplib 0.11 would wait for the peer to close.
  if (reader == nullptr || (!request.has_header("Content-Length") && !is_chunked(request))) return body;
  auto receive = [&](const char* data, size_t length) {
    body.bytes += length;
    if (keep && body.bytes <= limit) body.text.append(data, length);
    return true;
  };
  bool complete = false;
  const bool multipart = request.is_multipart_form_data();
  if (multipart) complete = (*reader)([](const httplib::MultipartFormData&) { return true; }, receive);
  else complete = (*reader)(receive);
  if (body.bytes > limit || response.status == 413)
    throw HttpError(413, ServingCode::resource_exhausted,
                    "request body is larger than the limit of " + std::to_string(limit) + " bytes");
  if (!complete) throw HttpError(400, ServingCode::invalid_argument, "could not read the request body");
  if (multipart) throw HttpError(415, ServingCode::invalid_argument, "multipart bodies are not accepted: send JSON");
  return body;
}

bool method_allows(std::string_view method, std::string_view allowed) {
  return method == allowed || (allowed == "GET" && method == "HEAD");
}

std::optional<std::string> api_name(const rest::Route& route) {
  switch (route.kind) {
    case rest::RouteKind::model_status: return "get_model_status";
    case rest::RouteKind::model_metadata: return "get_model_metadata";
    case rest::RouteKind::model_verb:
      if (route.verb == "predict" || route.verb == "punctuate" || route.verb == "classify" || route.verb == "regress")
        return route.verb;
      return std::nullopt;
    default: return std::nullopt;
  }
}

}  // namespace

class RestServer::Impl {
 public:
  Impl(ModelManager& models, ServingMetrics& metrics, RestOptions options)
      : models_(models), metrics_(metrics), options_(std::move(options)) {
    configure();
  }
  ~Impl() { stop(); }

  void start();
  void stop();
  int port() const { return port_; }
  void set_draining(bool draining) { draining_ = draining; }

 private:
  void configure();
  void handle(const httplib::Request& request, httplib::Response& response, const httplib::ContentReader* reader);
  Reply route(const httplib::Request& request, const Body& body, std::exception_ptr body_error, AccessRecord& record);
  Reply model_request(const rest::Route& route, const std::string& api, const Body& body, std::exception_ptr body_error,
                      AccessRecord& record);
  Reply run_model_api(const rest::Route& route, const Body& body, AccessRecord& record);
  std::shared_ptr<ServedVersion> find(const rest::Route& route, AccessRecord& record);
  Reply readiness() const;
  std::string unready_models() const;
  bool is_known_model(const std::string& name) const;
  void log_access(const httplib::Request& request, const httplib::Response& response) const;

  ModelManager& models_;
  ServingMetrics& metrics_;
  RestOptions options_;
  ListeningServer server_;
  ConnectionActivity connections_;
  std::thread listener_;
  std::atomic<bool> listener_done_{false};
  std::atomic<bool> draining_{false};
  std::mutex lifecycle_mutex_;
  bool started_ = false;
  bool stopped_ = false;
  int port_ = 0;
};

void RestServer::Impl::configure() {
  const size_t threads = options_.threads > 0 ? static_cast<size_t>(options_.threads) : kDefaultConnectionThreads;
  server_.new_task_queue = [threads] { return new ConnectionThreads(threads); };
  server_.set_keep_alive_max_count(kKeepAliveMaxRequests);
  server_.set_keep_alive_timeout(std::max(1, options_.keep_alive_seconds));
  server_.set_read_timeout(kSocketTimeoutSeconds);
  server_.set_write_timeout(kSocketTimeoutSeconds);
  server_.set_payload_max_length(options_.max_body_bytes);
  // cpp-httplib's default sets SO_REUSEPORT, which lets a second server bind the same port and silently take half
  // the traffic. SO_REUSEADDR alone still allows a restart while old connections sit in TIME_WAIT.
  server_.set_socket_options([](socket_t socket) {
    const int yes = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Headers and body go out in separate writes: without TCP_NODELAY, Nagle and delayed ACKs add up to 40 ms.
  server_.set_tcp_nodelay(true);

  // Every path and method reaches handle(), which routes itself: unknown paths get TF Serving-style JSON 404s and
  // known paths with the wrong method 405s, instead of cpp-httplib's empty 404s.
  const std::string any_path = "[\\s\\S]*";
  auto plain = [this](const httplib::Request& request, httplib::Response& response) { handle(request, response, nullptr); };
  auto with_body = [this](const httplib::Request& request, httplib::Response& response,
                          const httplib::ContentReader& reader) { handle(request, response, &reader); };
  server_.Get(any_path, plain);
  server_.Options(any_path, plain);
  server_.Post(any_path, with_body);
  server_.Put(any_path, with_body);
  server_.Patch(any_path, with_body);
  server_.Delete(any_path, with_body);

  // Failures cpp-httplib answers itself (unparsable request line, URI too long, a bad chunk) get a JSON body too.
  server_.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& response) {
    if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    response.set_content(json_text({{"error", reason_phrase(response.status)}}), kJsonType);
    return httplib::Server::HandlerResponse::Handled;
  }));
  server_.set_exception_handler([](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
    std::string message = "unknown failure";
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
    }
    response.status = 500;
    response.set_content(json_text({{"error", "internal error: " + message}}), kJsonType);
  });
  server_.set_logger([this](const httplib::Request& request, const httplib::Response& response) {
    if (options_.access_log) log_access(request, response);
    if (current_access.request == &request) current_access.request = nullptr;
  });
}

void RestServer::Impl::start() {
  std::lock_guard lock(lifecycle_mutex_);
  if (started_) throw Error("the REST server was already started");
  errno = 0;
  const int port = options_.port == 0 ? server_.bind_to_any_port(options_.host)
                   : server_.bind_to_port(options_.host, options_.port) ? options_.port
                                                                         : -1;
  if (port <= 0) {
    const std::string reason = errno != 0 ? std::string(": ") + std::strerror(errno) : "";
    throw Error("REST API cannot listen on " + options_.host + ":" + std::to_string(options_.port) + reason);
  }
  // cpp-httplib 0.11 listens with a backlog of 5: hundreds of clients connecting at once would have their SYNs
  // dropped and retried a second later. Listening again only raises the backlog.
  ::listen(server_.listening_socket(), SOMAXCONN);
  port_ = port;
  started_ = true;
  listener_ = std::thread([this] {
    try {
      server_.listen_after_bind();
    } catch (...) {
      // Only a broken accept loop gets here; the server then stops accepting rather than ending the process.
    }
    listener_done_ = true;
  });
  // stop() only acts on a running server: wait until the accept loop has begun.
  while (!server_.is_running() && !listener_done_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void RestServer::Impl::stop() {
  std::lock_guard lock(lifecycle_mutex_);
  if (!started_ || stopped_) return;
  stopped_ = true;
  server_.stop();  // closes the listening socket: no new connections
  connections_.close_idle(port_);
  listener_.join();  // returns once every connection thread has finished its request
}

void RestServer::Impl::handle(const httplib::Request& request, httplib::Response& response,
                              const httplib::ContentReader* reader) {
  AccessRecord& record = current_access;
  record = AccessRecord{};
  record.request = &request;
  record.start = Clock::now();
  ConnectionActivity::Busy busy(connections_, request);
  Reply reply;
  try {
    Body body;
    std::exception_ptr body_error;
    try {
      body = read_body(request, response, reader, request.method == "POST", options_.max_body_bytes);
    } catch (...) {
      body_error = std::current_exception();  // answered by the route: a model route counts it in its metrics
    }
    record.bytes_in = body.bytes;
    reply = route(request, body, body_error, record);
  } catch (const std::exception& e) {
    reply = error_reply(e);
  } catch (...) {
    reply = error_reply(Error("unknown failure"));
  }
  response.status = reply.status;
  response.set_content(std::move(reply.body), reply.content_type);
  if (!reply.allow.empty()) response.set_header("Allow", reply.allow);
}

Reply RestServer::Impl::route(const httplib::Request& request, const Body& body, std::exception_ptr body_error,
                              AccessRecord& record) {
  const rest::Route route = rest::parse_route(request.path);
  const std::optional<std::string> api = api_name(route);
  const bool model_route = route.kind == rest::RouteKind::model_status || route.kind == rest::RouteKind::model_metadata ||
                           route.kind == rest::RouteKind::model_verb;
  if (route.kind == rest::RouteKind::unknown || (model_route && !api)) {
    if (body_error) std::rethrow_exception(body_error);
    throw HttpError(404, ServingCode::not_found,
                    "no route for " + request.method + " " + request.path +
                        " (TF Serving's REST API: GET /v1/models/NAME[/versions/V|/labels/L][/metadata], POST "
                        "/v1/models/NAME[/versions/V|/labels/L]:predict or :punctuate)");
  }
  const std::string_view allowed = rest::route_method(route.kind);
  if (!method_allows(request.method, allowed)) {
    if (body_error) std::rethrow_exception(body_error);
    Reply reply = error_reply(HttpError(405, ServingCode::invalid_argument,
                                        request.method + " is not allowed on " + request.path + ": use " +
                                            std::string(allowed)));
    reply.allow = allowed == "GET" ? "GET, HEAD" : "POST";
    return reply;
  }
  if (model_route) return model_request(route, *api, body, body_error, record);
  if (body_error) std::rethrow_exception(body_error);
  switch (route.kind) {
    case rest::RouteKind::liveness: return json_reply(R"({"alive":true})");
    case rest::RouteKind::readiness: return readiness();
    case rest::RouteKind::metrics: return reply_with(200, ServingCode::ok, metrics_.prometheus_text(), kPrometheusType);
    default: throw Error("unrouted path " + request.path);
  }
}

Reply RestServer::Impl::model_request(const rest::Route& route, const std::string& api, const Body& body,
                                      std::exception_ptr body_error, AccessRecord& record) {
  record.model = route.model;
  record.version = route.version;
  const auto start = Clock::now();
  Reply reply;
  try {
    if (body_error) std::rethrow_exception(body_error);
    if (route.version_too_large) throw InvalidArgument("the version in the path does not fit a 64-bit integer");
    reply = run_model_api(route, body, record);
  } catch (const std::exception& e) {
    reply = error_reply(e);
  }
  // Model names come from clients: only configured ones become label values, so junk names cannot grow the
  // metrics without bound.
  const std::string model = is_known_model(route.model) ? route.model : "";
  metrics_.count_request(model, std::string(serving_code_name(reply.code)));
  metrics_.observe_latency(model, api, "REST",
                           std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  return reply;
}

std::shared_ptr<ServedVersion> RestServer::Impl::find(const rest::Route& route, AccessRecord& record) {
  std::shared_ptr<ServedVersion> served = models_.find(route.model, route.version, route.label);
  record.version = served->version();
  return served;
}

Reply RestServer::Impl::run_model_api(const rest::Route& route, const Body& body, AccessRecord& record) {
  if (route.kind == rest::RouteKind::model_status)
    return json_reply(rest::model_status_json(models_.status(route.model, route.version, route.label)));
  const std::shared_ptr<ServedVersion> served = find(route, record);
  const ModelMetadata& metadata = served->metadata();
  if (route.kind == rest::RouteKind::model_metadata)
    return json_reply(rest::model_metadata_json(route.model, served->version(), metadata));
  if (route.verb == "predict") {
    const PredictRequest request = parse_predict_request(body.text, metadata);
    const auto selected = select_outputs(*request.signature, {}, metadata.has_head());
    const OutputBatch outputs = served->run(request.inputs, output_selection(selected));
    return json_reply(format_predict_response(request, outputs, selected, static_cast<int64_t>(metadata.labels.size()),
                                              metadata.config.hidden_size));
  }
  if (route.verb == "punctuate") {
    // Windows go through the version's batch scheduler, together with everyone else's requests.
    auto run = [served](const InputBatch& inputs, const OutputSelection& outputs) { return served->run(inputs, outputs); };
    return json_reply(rest::punctuate_json(body.text, metadata, served->tokenizer(), run));
  }
  throw ServingError(ServingCode::unimplemented, ":" + route.verb +
                                                     " is not implemented: halfserve serves token classifiers through "
                                                     ":predict (and raw text through :punctuate)");
}

bool RestServer::Impl::is_known_model(const std::string& name) const {
  for (const std::string& known : models_.model_names())
    if (known == name) return true;
  return false;
}

Reply RestServer::Impl::readiness() const {
  std::string reason;
  if (draining_) reason = "draining: the server is shutting down";
  else if (!models_.ready()) reason = unready_models();
  if (reason.empty()) return json_reply(R"({"ready":true})");
  return reply_with(503, ServingCode::unavailable, json_text({{"ready", false}, {"reason", reason}}));
}

// "no version of NAME is available yet (last error: ...)" for each model that keeps the server from being ready.
std::string RestServer::Impl::unready_models() const {
  std::string reason;
  for (const std::string& name : models_.model_names()) {
    std::string problem;
    try {
      bool available = false;
      for (const VersionStatus& status : models_.status(name)) {
        available |= status.state == VersionState::available;
        if (status.error_code != ServingCode::ok) problem = status.error_message;
      }
      if (available) continue;
    } catch (const std::exception& e) {
      problem = e.what();
    }
    if (!reason.empty()) reason += "; ";
    reason += "no version of " + name + " is available yet" + (problem.empty() ? "" : " (last error: " + problem + ")");
  }
  return reason.empty() ? "models are loading" : reason;
}

void RestServer::Impl::log_access(const httplib::Request& request, const httplib::Response& response) const {
  const bool handled = current_access.request == &request;
  const AccessRecord& record = current_access;
  ordered_json line = {
      {"time", utc_timestamp()},
      {"remote", request.remote_addr},
      {"method", request.method},
      {"path", request.path},
      {"status", response.status},
      {"bytes_in", handled ? record.bytes_in : request.body.size()},
      {"bytes_out", response.body.size()},
      {"latency_us", handled ? std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - record.start).count() : 0},
      {"model", handled && !record.model.empty() ? ordered_json(record.model) : ordered_json(nullptr)},
      {"version", handled && record.version ? ordered_json(*record.version) : ordered_json(nullptr)},
  };
  try {
    options_.access_log(json_text(line));
  } catch (...) {
    // A failing log sink must not fail the server.
  }
}

RestServer::RestServer(ModelManager& models, ServingMetrics& metrics, RestOptions options)
    : impl_(std::make_unique<Impl>(models, metrics, std::move(options))) {}
RestServer::~RestServer() = default;
void RestServer::start() { impl_->start(); }
int RestServer::port() const { return impl_->port(); }
void RestServer::stop() { impl_->stop(); }
void RestServer::set_draining(bool draining) { impl_->set_draining(draining); }

}  // namespace halfserve
