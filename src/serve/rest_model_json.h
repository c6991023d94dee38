#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "halfserve/format/model_metadata.h"
#include "halfserve/serve/model_manager.h"

// GetModelStatus and GetModelMetadata replies as TF Serving's REST API writes them: protobuf's JSON mapping with
// every field printed (int64 as strings, enums by name).
namespace halfserve::rest {

// {"model_version_status":[{"version":"3","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}
std::string model_status_json(const std::vector<VersionStatus>& statuses);

// {"model_spec":{"name","signature_name":"","version"},"metadata":{"signature_def":{"signature_def":{...}}}}
std::string model_metadata_json(const std::string& model_name, int64_t version, const ModelMetadata& metadata);

// The TensorFlow dtype and shape of a signature tensor, as the gRPC metadata (tensor_proto_io.cc) also gives them.
std::string_view input_dtype_name(InputRole role);    // "DT_INT32"
std::string_view output_dtype_name(OutputRole role);  // "DT_FLOAT", or "DT_INT64" for label ids
// [-1, -1] for ids and label ids, [-1, -1, width] for logits, probabilities and hidden states.
std::vector<int64_t> output_dims(OutputRole role, const ModelMetadata& metadata);

}  // namespace halfserve::rest
