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

// A caller-supplied value is malformed (a bad request or input batch): HTTP 400 in the server; the CLI exits 1
// for it like any failure (exit 2 is reserved for bad command-line usage).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

}  // namespace halfserve
