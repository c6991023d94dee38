#include "serve/rest_routes.h"

#include <charconv>

namespace halfserve::rest {

namespace {

constexpr std::string_view kModelsPrefix = "/v1/models/";
constexpr std::string_view kV2ModelsPrefix = "/v2/models/";

bool consume(std::string_view& text, std::string_view prefix) {
  if (text.substr(0, prefix.size()) != prefix) return false;
  text.remove_prefix(prefix.size());
  return true;
}

// A path segment as TF Serving's route regex takes names and labels: [^/:]+.
std::string_view take_segment(std::string_view& text) {
  const size_t end = text.find_first_of("/:");
  const std::string_view segment = text.substr(0, end);
  text.remove_prefix(segment.size());
  return segment;
}

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (const char c : text)
    if (c < '0' || c > '9') return false;
  return true;
}

// The V of /versions/V: digits (more than int64 holds is an error the caller reports); false for anything else.
bool take_version(std::string_view& rest, Route& route) {
  const std::string_view digits = take_segment(rest);
  if (!all_digits(digits)) return false;
  int64_t version = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), version);
  if (error != std::errc() || end != digits.data() + digits.size()) route.version_too_large = true;
  else route.version = version;
  return true;
}

// What follows NAME[/versions/V|/labels/L]: nothing (status), "/metadata", or ":VERB".
bool parse_tail(std::string_view tail, Route& route) {
  if (tail.empty()) {
    route.kind = RouteKind::model_status;
    return true;
  }
  if (tail == "/metadata") {
    route.kind = RouteKind::model_metadata;
    return true;
  }
  if (consume(tail, ":") && !tail.empty() && tail.find_first_of("/:") == std::string_view::npos) {
    route.kind = tail == "stream" ? RouteKind::model_stream : RouteKind::model_verb;
    route.verb = std::string(tail);
    return true;
  }
  return false;
}

Route parse_model_route(std::string_view rest) {
  Route route;
  const std::string_view name = take_segment(rest);
  if (name.empty()) return {};
  route.model = std::string(name);
  if (consume(rest, "/versions/")) {
    if (!take_version(rest, route)) return {};
  } else if (consume(rest, "/labels/")) {
    const std::string_view label = take_segment(rest);
    if (label.empty()) return {};
    route.label = std::string(label);
  }
  if (!parse_tail(rest, route)) return {};
  return route;
}

// NAME[/versions/V] then nothing (metadata), "/ready" or "/infer". The protocol's versions are strings; halfserve's
// are numbers, so other text matches no route.
Route parse_v2_model_route(std::string_view rest) {
  Route route;
  const std::string_view name = take_segment(rest);
  if (name.empty()) return {};
  route.model = std::string(name);
  if (consume(rest, "/versions/")) {
    if (!take_version(rest, route)) return {};
  }
  if (rest.empty()) route.kind = RouteKind::v2_model_metadata;
  else if (rest == "/ready") route.kind = RouteKind::v2_model_ready;
  else if (rest == "/infer") route.kind = RouteKind::v2_infer;
  else return {};
  return route;
}

// "/" or "/NAME.EXT" with one dot, not leading: where the web page's files are.
bool is_web_file_path(std::string_view path) {
  if (path == "/") return true;
  if (!consume(path, "/") || path.find('/') != std::string_view::npos) return false;
  const size_t dot = path.find('.');
  return dot != std::string_view::npos && dot > 0 && dot + 1 < path.size() && path.find('.', dot + 1) == std::string_view::npos;
}

}  // namespace

Route parse_route(std::string_view path) {
  Route route;
  if (path == "/v1/models") {
    route.kind = RouteKind::model_list;
    return route;
  }
  if (consume(path, kModelsPrefix)) return parse_model_route(path);
  if (consume(path, kV2ModelsPrefix)) return parse_v2_model_route(path);
  if (path == "/v2" || path == "/v2/") route.kind = RouteKind::v2_server_metadata;
  else if (path == "/v2/health/live") route.kind = RouteKind::v2_live;
  else if (path == "/v2/health/ready") route.kind = RouteKind::v2_ready;
  else if (path == "/healthz") route.kind = RouteKind::liveness;
  else if (path == "/readyz") route.kind = RouteKind::readiness;
  else if (path == "/monitoring/prometheus/metrics") route.kind = RouteKind::metrics;
  else if (is_web_file_path(path)) route.kind = RouteKind::web_file;
  return route;
}

std::string_view route_method(RouteKind kind) {
  return kind == RouteKind::model_verb || kind == RouteKind::v2_infer ? "POST" : "GET";
}

}  // namespace halfserve::rest
