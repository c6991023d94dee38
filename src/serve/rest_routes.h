#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

// The REST server's routes: TF Serving's /v1/models/... paths, the Open Inference Protocol's /v2/... paths, health
// and metrics. Kept apart from the HTTP
// library so the grammar can be tested on its own.
namespace halfserve::rest {

enum class RouteKind : uint8_t {
  unknown,
  liveness,        // GET /healthz
  readiness,       // GET /readyz
  metrics,         // GET /monitoring/prometheus/metrics
  model_status,    // GET /v1/models/NAME[/versions/V|/labels/L]
  model_metadata,  // GET /v1/models/NAME[/versions/V|/labels/L]/metadata
  model_verb,      // POST /v1/models/NAME[/versions/V|/labels/L]:VERB
  model_stream,    // GET /v1/models/NAME[/versions/V|/labels/L]:stream, a WebSocket (halfserve's)
  model_list,      // GET /v1/models: the served models (halfserve's, for the web page)
  web_file,        // GET / or /FILE.EXT: the web page's files (halfserve's)
  v2_server_metadata,  // GET /v2
  v2_live,             // GET /v2/health/live
  v2_ready,            // GET /v2/health/ready
  v2_model_metadata,   // GET /v2/models/NAME[/versions/V]
  v2_model_ready,      // GET /v2/models/NAME[/versions/V]/ready
  v2_infer,            // POST /v2/models/NAME[/versions/V]/infer
};

struct Route {
  RouteKind kind = RouteKind::unknown;
  std::string model;
  std::optional<int64_t> version;
  std::string label;
  std::string verb;          // model_verb: "predict", "punctuate", "classify", ... (not checked here)
  bool version_too_large = false;  // /versions/ digits beyond int64: INVALID_ARGUMENT, as TF Serving answers
};

// Parses a decoded request path (no query). Never throws: what does not match is RouteKind::unknown.
Route parse_route(std::string_view path);

// The HTTP method a route kind answers ("GET" also serves HEAD).
std::string_view route_method(RouteKind kind);

}  // namespace halfserve::rest
