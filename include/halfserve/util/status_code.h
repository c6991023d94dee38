#pragma once

#include <string_view>

namespace halfserve {

// gRPC's status codes (same numbers), which TF Serving also maps onto its REST replies. Shared by the server,
// which answers with them, and by clients such as the wire bench, which report them.
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

std::string_view serving_code_name(ServingCode code);  // "INVALID_ARGUMENT"; "UNKNOWN" for a number past the list

}  // namespace halfserve
