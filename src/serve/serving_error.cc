#include "halfserve/serve/serving_error.h"

#include <array>

namespace halfserve {

int http_status(ServingCode code) {
  switch (code) {
    case ServingCode::ok: return 200;
    case ServingCode::invalid_argument:
    case ServingCode::failed_precondition:
    case ServingCode::out_of_range: return 400;
    case ServingCode::unauthenticated: return 401;
    case ServingCode::permission_denied: return 403;
    case ServingCode::not_found: return 404;
    case ServingCode::already_exists:
    case ServingCode::aborted: return 409;
    case ServingCode::resource_exhausted: return 429;
    case ServingCode::cancelled: return 499;
    case ServingCode::unimplemented: return 501;
    case ServingCode::unavailable: return 503;
    case ServingCode::deadline_exceeded: return 504;
    default: return 500;
  }
}

ServingCode serving_code_of(const std::exception& error) {
  if (const auto* serving = dynamic_cast<const ServingError*>(&error)) return serving->code();
  if (dynamic_cast<const InvalidArgument*>(&error) != nullptr) return ServingCode::invalid_argument;
  return ServingCode::internal;
}

}  // namespace halfserve
