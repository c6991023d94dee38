#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "serve/inference_v2.h"

// The Open Inference Protocol's REST wire format: JSON tensors, and the binary tensor extension (a JSON header of
// Inference-Header-Content-Length bytes, then each binary tensor's bytes in order).
namespace halfserve::rest {

inline constexpr const char* kInferenceHeaderLength = "Inference-Header-Content-Length";

// An infer request body. `header_length`: the Inference-Header-Content-Length header's value, when sent. The JSON is
// read as a stream of events with the same budgets as TF Serving's predict body (values, nesting, names), so a body
// costs about four bytes per id. Throws InvalidArgument naming the problem (malformed JSON, a missing or mistyped
// field, a shape that does not match the data, binary sizes that do not add up to the body).
v2::InferRequest read_infer_request(std::string_view body, const std::string& header_length);

struct InferReplyBody {
  std::string body;
  std::optional<size_t> header_length;  // set when binary outputs follow the JSON
};

// {"model_name", "model_version", "id", "outputs": [{"name", "datatype", "shape", "data" | "parameters"}]}, with
// binary outputs' bytes after the JSON.
InferReplyBody write_infer_response(const v2::InferResponse& response);

std::string server_metadata_json(const v2::ServerMetadataV2& metadata);
std::string model_metadata_json(const v2::ModelMetadataV2& metadata);

}  // namespace halfserve::rest
