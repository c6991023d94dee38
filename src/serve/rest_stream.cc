#include "serve/rest_stream.h"

#include <strings.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <optional>
#include <nlohmann/json.hpp>

#include "serve/json_numbers.h"

#include "halfserve/serve/serving_error.h"
#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"
#include "halfserve/util/utf8.h"
#include "serve/websocket.h"

namespace halfserve::rest {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kUpgrade = "Upgrade";
constexpr const char* kConnection = "Connection";
constexpr const char* kKey = "Sec-WebSocket-Key";
constexpr const char* kVersion = "Sec-WebSocket-Version";
constexpr std::string_view kProtocolVersion = "13";

// A message holds a few fields; anything bigger is not this protocol.
constexpr size_t kMaxMessageValues = 16;

// Whether a comma-separated header value lists `token` (case-insensitive), as Connection and Upgrade do.
bool lists_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.size() == token.size() && strncasecmp(item.data(), token.data(), token.size()) == 0) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string json_text(const json& document) { return document.dump(-1, ' ', false, json::error_handler_t::replace); }

int64_t setting(const json& value, const char* name) {
  if (!value.is_number_integer()) throw InvalidArgument(std::string("\"") + name + "\" must be an integer");
  return value.get<int64_t>();
}

// A message's fields, each checked for its type; unknown fields are refused by name.
struct StreamMessage {
  std::optional<int64_t> window, stride;
  std::optional<std::string> text;
  bool flush = false;
  bool settings_only() const { return !text && !flush; }
};

StreamMessage read_message(const std::string& message) {
  if (!is_valid_utf8(message)) throw InvalidArgument("the message is not valid UTF-8");
  json document;
  try {
    document = parse_bounded_json(message, "stream message", kMaxMessageValues);
  } catch (const json::exception& e) {
    throw InvalidArgument(std::string("the message is not JSON: ") + e.what());
  }
  if (!document.is_object())
    throw InvalidArgument(R"(a message is a JSON object: {"text": "…"}, {"flush": true} or {"window": W, "stride": S})");
  StreamMessage read;
  for (const auto& [key, value] : document.items()) {
    if (key == "window") {
      read.window = setting(value, "window");
    } else if (key == "stride") {
      read.stride = setting(value, "stride");
    } else if (key == "text") {
      if (!value.is_string()) throw InvalidArgument("\"text\" must be a string");
      read.text = value.get<std::string>();
    } else if (key == "flush") {
      if (!value.is_boolean()) throw InvalidArgument("\"flush\" must be true or false");
      read.flush = value.get<bool>();
    } else {
      throw InvalidArgument("unknown field \"" + key + "\" (a message has \"text\", \"flush\", \"window\", \"stride\")");
    }
  }
  return read;
}

json commit_json(const StreamCommit& commit, size_t pending_bytes, bool final) {
  json words = json::array();
  for (const CommittedWord& word : commit.words)
    words.push_back({{"text", word.text}, {"label", word.label}, {"mark", word.mark},
                     {"probability", json_float(word.probability)}});
  json reply = {{"committed", commit.text}, {"words", std::move(words)}, {"pending_bytes", pending_bytes}};
  if (final) reply["final"] = true;
  return reply;
}

}  // namespace

const std::vector<std::string>& websocket_request_headers() {
  static const std::vector<std::string> headers = {kUpgrade, kConnection, kKey, kVersion};
  return headers;
}

std::vector<std::pair<std::string, std::string>> websocket_handshake(const HttpRequest& request) {
  if (request.method != "GET")
    throw HttpError(400, ServingCode::invalid_argument, ":stream is a WebSocket: open it with a GET handshake");
  const std::string version = request_header(request, kVersion);
  std::vector<std::string> missing;
  if (!lists_token(request_header(request, kUpgrade), "websocket")) missing.push_back("Upgrade: websocket");
  if (!lists_token(request_header(request, kConnection), "upgrade")) missing.push_back("Connection: Upgrade");
  const std::string key = request_header(request, kKey);
  if (key.empty()) missing.push_back("Sec-WebSocket-Key");
  else if (!websocket::valid_client_key(key)) missing.push_back("a Sec-WebSocket-Key of 16 bytes in base64");
  if (version.empty()) missing.push_back("Sec-WebSocket-Version: 13");
  if (!missing.empty()) {
    std::string list;
    for (const std::string& item : missing) list += (list.empty() ? "" : ", ") + item;
    throw HttpError(400, ServingCode::invalid_argument,
                    ":stream is a WebSocket (RFC 6455); the request lacks " + list);
  }
  if (version != kProtocolVersion) {
    // RFC 6455 §4.4: 426 naming the version this server speaks.
    throw HttpError(426, ServingCode::invalid_argument,
                    "WebSocket version " + version + " is not supported: use Sec-WebSocket-Version: 13");
  }
  // (Connection: Upgrade is not listed: libmicrohttpd puts it on every upgrade reply.)
  return {{kUpgrade, "websocket"}, {"Sec-WebSocket-Accept", websocket::accept_key(key)}};
}

PunctuationStreamSession::PunctuationStreamSession(std::shared_ptr<ServedVersion> served, ServingMetrics& metrics,
                                                   std::string metrics_model)
    : served_(std::move(served)),
      metrics_(metrics),
      metrics_model_(std::move(metrics_model)),
      stream_(std::make_unique<PunctuationStream>(served_, StreamingOptions{})) {}

std::vector<std::string> PunctuationStreamSession::on_message(std::string message, bool text) {
  const auto start = Clock::now();
  ServingCode code = ServingCode::ok;
  std::string reply;
  try {
    reply = answer(message, text);
  } catch (const std::exception& e) {
    code = serving_code_of(e);
    reply = json_text({{"error", e.what()}});
  }
  metrics_.count_request(metrics_model_, std::string(serving_code_name(code)));
  metrics_.observe_latency(metrics_model_, "stream", "REST",
                           std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  return {std::move(reply)};
}

std::string PunctuationStreamSession::answer(const std::string& message, bool text) {
  if (!text) throw InvalidArgument("binary messages are not taken: send JSON text messages");
  const StreamMessage read = read_message(message);
  if (read.window || read.stride) {
    if (opened_) throw InvalidArgument("\"window\" and \"stride\" may only be set by the stream's first message");
    StreamingOptions options;
    if (read.window) options.window = *read.window;
    if (read.stride) options.stride = *read.stride;
    stream_ = std::make_unique<PunctuationStream>(served_, options);
  }
  if (read.settings_only()) {
    if (opened_) throw InvalidArgument(R"(a message after the first needs "text" or "flush")");
    opened_ = true;
    const StreamingPunctuator& punctuator = stream_->punctuator();
    return json_text({{"window", punctuator.window() + 2},  // as requests count it: [CLS] and [SEP] included
                      {"stride", punctuator.stride()},
                      {"lookahead_tokens", punctuator.max_lookahead_tokens()},
                      {"model", served_->model_name()},
                      {"version", served_->version()}});
  }
  opened_ = true;
  const StreamCommit commit = stream_->take(read.text ? *read.text : std::string_view(), read.flush);
  return json_text(commit_json(commit, stream_->pending_bytes(), read.flush));
}

}  // namespace halfserve::rest
