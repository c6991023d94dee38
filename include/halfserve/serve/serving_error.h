#pragma once

#include <string>
#include <string_view>

#include "halfserve/util/error.h"
#include "halfserve/util/status_code.h"

namespace halfserve {

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
