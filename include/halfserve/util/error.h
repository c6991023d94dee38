#pragma once

#include <stdexcept>
#include <string>

namespace halfserve {

// Every failure the library reports to a user is an Error whose message names the file, tensor, field or
// request element at fault. Callers at the edges (CLI, server) turn it into an exit code or an HTTP status.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller-supplied value is malformed (bad request, bad flag): maps to exit code 2 / HTTP 400.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

}  // namespace halfserve
