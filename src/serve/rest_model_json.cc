#include "serve/rest_model_json.h"

#include <nlohmann/json.hpp>

namespace halfserve::rest {

using nlohmann::ordered_json;  // TF Serving's field order, so replies read like its own

namespace {

std::string dump(const ordered_json& document) {
  return document.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

// TensorShapeProto in protobuf's JSON mapping: int64 sizes are strings, unknown_rank is always printed.
ordered_json tensor_shape(const std::vector<int64_t>& dims) {
  ordered_json dim = ordered_json::array();
  for (const int64_t size : dims) dim.push_back({{"size", std::to_string(size)}, {"name", ""}});
  return {{"dim", dim}, {"unknown_rank", false}};
}

// TensorInfo: the tensor's graph name is "NAME:0", as in a SavedModel's signature.
ordered_json tensor_info(std::string_view dtype, const std::vector<int64_t>& dims, const std::string& name) {
  return {{"dtype", dtype}, {"tensor_shape", tensor_shape(dims)}, {"name", name + ":0"}};
}

ordered_json signature_def(const Signature& signature, const ModelMetadata& metadata) {
  ordered_json inputs = ordered_json::object(), outputs = ordered_json::object();
  for (const auto& [name, role] : signature.inputs) inputs[name] = tensor_info(input_dtype_name(role), {-1, -1}, name);
  for (const auto& [name, role] : signature.outputs)
    outputs[name] = tensor_info(output_dtype_name(role), output_dims(role, metadata), name);
  return {{"inputs", inputs}, {"outputs", outputs}, {"method_name", signature.method_name}};
}

}  // namespace

std::string_view input_dtype_name(InputRole) { return "DT_INT32"; }

// Label ids are DT_INT64, as tf.argmax gives them in the TF graphs clients know (and as the gRPC metadata says).
std::string_view output_dtype_name(OutputRole role) { return role == OutputRole::label_ids ? "DT_INT64" : "DT_FLOAT"; }

std::vector<int64_t> output_dims(OutputRole role, const ModelMetadata& metadata) {
  switch (role) {
    case OutputRole::label_ids: return {-1, -1};
    case OutputRole::last_hidden_state: return {-1, -1, metadata.config.hidden_size};
    case OutputRole::logits:
    case OutputRole::probabilities: break;
  }
  return {-1, -1, static_cast<int64_t>(metadata.labels.size())};
}

std::string model_status_json(const std::vector<VersionStatus>& statuses) {
  ordered_json versions = ordered_json::array();
  for (const VersionStatus& status : statuses) {
    versions.push_back({{"version", std::to_string(status.version)},
                        {"state", version_state_name(status.state)},
                        {"status", {{"error_code", serving_code_name(status.error_code)},
                                    {"error_message", status.error_message}}}});
  }
  return dump({{"model_version_status", versions}});
}

std::string model_metadata_json(const std::string& model_name, int64_t version, const ModelMetadata& metadata) {
  ordered_json signatures = ordered_json::object();
  for (const Signature& signature : metadata.signatures) signatures[signature.name] = signature_def(signature, metadata);
  const ordered_json document = {
      {"model_spec", {{"name", model_name}, {"signature_name", ""}, {"version", std::to_string(version)}}},
      {"metadata", {{"signature_def", {{"signature_def", signatures}}}}}};
  return dump(document);
}

}  // namespace halfserve::rest
