#include "halfserve/serve/rest_server.h"

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/serve/predict_json.h"
#include "halfserve/serve/serving_error.h"
#include "serve/http_front.h"
#include "serve/rest_model_json.h"
#include "serve/rest_punctuate.h"
#include "serve/rest_routes.h"
#include "serve/rest_stream.h"
#include "serve/rest_v2.h"
#include "serve/rest_web.h"
#include "serve/websocket_hub.h"

namespace halfserve {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::ordered_json;

// Requests handled at once by default; each waits on its model there, so batching sees them together.
constexpr size_t kDefaultRequestThreads = 1000;

constexpr const char* kJsonType = "application/json";
constexpr const char* kPrometheusType = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kBinaryType = "application/octet-stream";

std::string json_text(const ordered_json& document) {
  return document.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

struct Reply {
  int status = 200;
  ServingCode code = ServingCode::ok;
  std::string body;
  std::string content_type = kJsonType;
  std::string allow;  // the Allow header of a 405
  std::vector<std::pair<std::string, std::string>> headers;
  std::function<void(UpgradedSocket)> upgrade;  // with 101: takes the connection
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

// What the access log needs beyond the request: the model and version that answered it.
struct AccessRecord {
  std::string model;
  std::optional<int64_t> version;
};

bool is_model_route(rest::RouteKind kind) {
  switch (kind) {
    case rest::RouteKind::model_status:
    case rest::RouteKind::model_metadata:
    case rest::RouteKind::model_verb:
    case rest::RouteKind::v2_model_metadata:
    case rest::RouteKind::v2_model_ready:
    case rest::RouteKind::v2_infer: return true;
    default: return false;
  }
}

// The v2 protocol's health answers: the status code is the answer, the body empty; 4xx for false.
Reply v2_health(bool healthy) { return reply_with(healthy ? 200 : 400, ServingCode::ok, "", "text/plain"); }

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
    case rest::RouteKind::v2_model_metadata: return "model_metadata";
    case rest::RouteKind::v2_model_ready: return "model_ready";
    case rest::RouteKind::v2_infer: return "infer";
    default: return std::nullopt;
  }
}

}  // namespace

class RestServer::Impl {
 public:
  Impl(ModelManager& models, ServingMetrics& metrics, RestOptions options)
      : models_(models),
        metrics_(metrics),
        options_(std::move(options)),
        streams_(stream_options()),
        front_(front_options()) {}

  void start() { front_.start(); }
  void stop() {
    // Streams first: they close with 1001 and give their sockets back before the transport closes every socket.
    streams_.stop();
    front_.stop();
  }
  int port() const { return front_.port(); }
  void set_draining(bool draining) { draining_ = draining; }

 private:
  HttpFrontOptions front_options();
  WebSocketHubOptions stream_options() const;
  Reply open_stream(const rest::Route& route, const HttpRequest& request, AccessRecord& record);
  HttpReply handle(const HttpRequest& request);
  Reply route(const HttpRequest& request, AccessRecord& record);
  Reply model_request(const rest::Route& route, const std::string& api, const HttpRequest& request, AccessRecord& record);
  Reply run_model_api(const rest::Route& route, const HttpRequest& request, AccessRecord& record);
  Reply run_v2_model_api(const rest::Route& route, const HttpRequest& request, AccessRecord& record);
  std::shared_ptr<ServedVersion> find(const rest::Route& route, AccessRecord& record);
  Reply readiness() const;
  std::string unready_models() const;
  void log_access(const HttpRequest& request, const HttpReply& reply, std::chrono::microseconds latency) const;

  ModelManager& models_;
  ServingMetrics& metrics_;
  RestOptions options_;
  std::atomic<bool> draining_{false};
  WebSocketHub streams_;  // before front_: reservations held in front_'s replies point into it
  HttpFront front_;
};

WebSocketHubOptions RestServer::Impl::stream_options() const {
  WebSocketHubOptions streams;
  streams.max_connections = options_.max_streams;
  streams.idle_timeout = options_.stream_idle_timeout;
  streams.max_message_bytes = kMaxStreamPieceBytes;
  // One message per stream is handled at a time, so more threads than streams would never run.
  streams.worker_threads = std::min(options_.max_streams, kDefaultRequestThreads);
  return streams;
}

HttpFrontOptions RestServer::Impl::front_options() {
  HttpFrontOptions front;
  front.host = options_.host;
  front.port = options_.port;
  front.max_body_bytes = options_.max_body_bytes;
  front.request_threads = options_.threads > 0 ? static_cast<size_t>(options_.threads) : kDefaultRequestThreads;
  front.max_connections = options_.max_connections;
  front.idle_timeout_seconds = static_cast<unsigned>(std::max(1, options_.keep_alive_seconds));
  front.request_headers = {rest::kInferenceHeaderLength};
  for (const std::string& name : rest::websocket_request_headers()) front.request_headers.push_back(name);
  front.handle = [this](const HttpRequest& request) { return handle(request); };
  if (options_.access_log)
    front.completed = [this](const HttpRequest& request, const HttpReply& reply, std::chrono::microseconds latency) {
      log_access(request, reply, latency);
    };
  return front;
}

HttpReply RestServer::Impl::handle(const HttpRequest& request) {
  AccessRecord record;
  Reply reply;
  try {
    reply = route(request, record);
  } catch (const std::exception& e) {
    reply = error_reply(e);
  }
  HttpReply http;
  http.status = reply.status;
  http.content_type = std::move(reply.content_type);
  http.body = std::move(reply.body);
  if (!reply.allow.empty()) http.headers.emplace_back("Allow", reply.allow);
  for (auto& header : reply.headers) http.headers.push_back(std::move(header));
  http.upgrade = std::move(reply.upgrade);
  http.model = std::move(record.model);
  http.version = record.version;
  return http;
}

Reply RestServer::Impl::route(const HttpRequest& request, AccessRecord& record) {
  const std::exception_ptr& body_error = request.body_error;
  const rest::Route route = rest::parse_route(request.path);
  const std::optional<std::string> api = api_name(route);
  const bool model_route = is_model_route(route.kind);
  if (route.kind == rest::RouteKind::unknown || (model_route && !api)) {
    if (body_error) std::rethrow_exception(body_error);
    throw HttpError(404, ServingCode::not_found,
                    "no route for " + request.method + " " + request.path +
                        " (TF Serving's REST API: GET /v1/models/NAME[/versions/V|/labels/L][/metadata], POST "
                        "/v1/models/NAME[/versions/V|/labels/L]:predict or :punctuate; the v2 protocol's: GET "
                        "/v2, /v2/health/live|ready, /v2/models/NAME[/versions/V][/ready], POST "
                        "/v2/models/NAME[/versions/V]/infer; halfserve's: GET /, /v1/models, the WebSocket "
                        "/v1/models/NAME[/versions/V|/labels/L]:stream)");
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
  if (model_route) return model_request(route, *api, request, record);
  if (body_error) std::rethrow_exception(body_error);
  switch (route.kind) {
    case rest::RouteKind::model_stream: return open_stream(route, request, record);
    case rest::RouteKind::model_list: return json_reply(rest::served_models_json(models_));
    case rest::RouteKind::web_file: {
      const rest::WebAsset* asset = rest::find_web_asset(request.path);
      if (asset == nullptr) throw HttpError(404, ServingCode::not_found, "no file " + request.path + " (the web page is at /)");
      Reply reply = reply_with(200, ServingCode::ok, std::string(asset->body), std::string(asset->content_type));
      // The page talks to this server only: no script, style, font or connection from anywhere else.
      reply.headers = {{"Content-Security-Policy", "default-src 'self'; connect-src 'self'; frame-ancestors 'none'"},
                       {"X-Content-Type-Options", "nosniff"},
                       {"Cache-Control", "no-cache"}};
      return reply;
    }
    case rest::RouteKind::liveness: return json_reply(R"({"alive":true})");
    case rest::RouteKind::readiness: return readiness();
    case rest::RouteKind::metrics: return reply_with(200, ServingCode::ok, metrics_.prometheus_text(), kPrometheusType);
    case rest::RouteKind::v2_server_metadata: return json_reply(rest::server_metadata_json(v2::server_metadata()));
    case rest::RouteKind::v2_live: return v2_health(true);
    case rest::RouteKind::v2_ready: return v2_health(!draining_ && models_.ready());
    default: throw Error("unrouted path " + request.path);
  }
}

Reply RestServer::Impl::model_request(const rest::Route& route, const std::string& api, const HttpRequest& request,
                                      AccessRecord& record) {
  record.model = route.model;
  record.version = route.version;
  const auto start = Clock::now();
  Reply reply;
  try {
    if (request.body_error) std::rethrow_exception(request.body_error);
    if (route.version_too_large) throw InvalidArgument("the version in the path does not fit a 64-bit integer");
    reply = run_model_api(route, request, record);
  } catch (const std::exception& e) {
    reply = error_reply(e);
  }
  const std::string model = models_.metrics_label(route.model);
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

Reply RestServer::Impl::run_model_api(const rest::Route& route, const HttpRequest& request, AccessRecord& record) {
  if (route.kind == rest::RouteKind::v2_model_metadata || route.kind == rest::RouteKind::v2_model_ready ||
      route.kind == rest::RouteKind::v2_infer)
    return run_v2_model_api(route, request, record);
  if (route.kind == rest::RouteKind::model_status)
    return json_reply(rest::model_status_json(models_.status(route.model, route.version, route.label)));
  const std::shared_ptr<ServedVersion> served = find(route, record);
  const ModelMetadata& metadata = served->metadata();
  if (route.kind == rest::RouteKind::model_metadata)
    return json_reply(rest::model_metadata_json(route.model, served->version(), metadata));
  if (route.verb == "predict") {
    const PredictRequest predict = parse_predict_request(request.body, metadata);
    const auto selected = select_outputs(*predict.signature, {}, metadata.has_head());
    const OutputBatch outputs = served->run(predict.inputs, output_selection(selected));
    return json_reply(format_predict_response(predict, outputs, selected, static_cast<int64_t>(metadata.labels.size()),
                                              metadata.config.hidden_size));
  }
  if (route.verb == "punctuate") {
    // Windows go through the version's batch scheduler, together with everyone else's requests.
    auto run = [served](const InputBatch& inputs, const OutputSelection& outputs) { return served->run(inputs, outputs); };
    return json_reply(rest::punctuate_json(request.body, metadata, served->tokenizer(), run));
  }
  throw ServingError(ServingCode::unimplemented, ":" + route.verb +
                                                     " is not implemented: halfserve serves token classifiers through "
                                                     ":predict (and raw text through :punctuate)");
}

Reply RestServer::Impl::run_v2_model_api(const rest::Route& route, const HttpRequest& request, AccessRecord& record) {
  const std::string version = route.version ? std::to_string(*route.version) : "";
  if (route.kind == rest::RouteKind::v2_model_ready) return v2_health(v2::model_ready(models_, route.model, version));
  if (route.kind == rest::RouteKind::v2_model_metadata)
    return json_reply(rest::model_metadata_json(v2::model_metadata(models_, route.model, version)));
  v2::InferRequest infer = rest::read_infer_request(request.body, request_header(request, rest::kInferenceHeaderLength));
  infer.model_name = route.model;
  infer.model_version = version;
  const v2::InferResponse response = v2::infer(models_, std::move(infer));
  record.version = std::stoll(response.model_version);
  rest::InferReplyBody body = rest::write_infer_response(response);
  if (!body.header_length) return json_reply(std::move(body.body));
  Reply reply = reply_with(200, ServingCode::ok, std::move(body.body), kBinaryType);
  reply.headers.emplace_back(rest::kInferenceHeaderLength, std::to_string(*body.header_length));
  return reply;
}

// The WebSocket handshake of :stream, then the connection goes to the stream hub. Handshakes are not counted in the
// metrics; each message of the stream is (API "stream").
Reply RestServer::Impl::open_stream(const rest::Route& route, const HttpRequest& request, AccessRecord& record) {
  record.model = route.model;
  record.version = route.version;
  if (draining_) throw HttpError(503, ServingCode::unavailable, "the server is shutting down: open the stream elsewhere");
  if (route.version_too_large) throw InvalidArgument("the version in the path does not fit a 64-bit integer");
  Reply reply;
  try {
    reply.headers = rest::websocket_handshake(request);
  } catch (const HttpError& refused) {
    Reply answer = error_reply(refused);
    if (refused.status() == 426) answer.headers.emplace_back("Sec-WebSocket-Version", "13");  // RFC 6455 §4.4
    return answer;
  }
  const std::shared_ptr<ServedVersion> served = find(route, record);
  auto session = std::make_shared<rest::PunctuationStreamSession>(served, metrics_, models_.metrics_label(route.model));
  std::shared_ptr<WebSocketHub::Reservation> reservation = streams_.reserve();
  if (reservation == nullptr) {
    Reply refused = error_reply(HttpError(503, ServingCode::unavailable,
                                          "the server holds its limit of " + std::to_string(options_.max_streams) +
                                              " open streams: retry later"));
    refused.headers.emplace_back("Retry-After", "1");
    return refused;
  }
  reply.status = 101;
  reply.upgrade = [this, reservation = std::move(reservation), session = std::move(session)](UpgradedSocket socket) {
    streams_.adopt(std::move(socket), reservation, session);
  };
  return reply;
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

void RestServer::Impl::log_access(const HttpRequest& request, const HttpReply& reply,
                                  std::chrono::microseconds latency) const {
  ordered_json line = {
      {"time", utc_timestamp()},
      {"remote", request.remote},
      {"method", request.method},
      {"path", request.path},
      {"status", reply.status},
      {"bytes_in", request.body_bytes},
      {"bytes_out", reply.body.size()},
      {"latency_us", latency.count()},
      {"model", !reply.model.empty() ? ordered_json(reply.model) : ordered_json(nullptr)},
      {"version", reply.version ? ordered_json(*reply.version) : ordered_json(nullptr)},
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
