#pragma once

#include <string>
#include <string_view>

#include "halfserve/util/error.h"

namespace halfserve {

// gRPC's status codes (same numbers), which TF Serving also maps onto its REST replies.
enum class ServingCode : int {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  invalid_argument = 3,
  deadline_exceeded = 4,
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
};

std::string_view serving_code_name(ServingCode code);  // "INVALID_ARGUMENT"
int http_status(ServingCode code);                      // 400, 404, 429, 503, ...

// A failure to answer a request, with the code clients see.
class ServingError : public Error {
 public:
  ServingError(ServingCode code, const std::string& message) : Error(message), code_(code) {}
  ServingCode code() const { return code_; }

 private:
  ServingCode code_;
};

// The code for any exception a request raised: ServingError's own, INVALID_ARGUMENT for InvalidArgument,
// INTERNAL otherwise.
ServingCode serving_code_of(const std::exception& error);

}  // namespace halfserve
