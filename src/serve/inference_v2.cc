#include "serve/inference_v2.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <set>

#include "halfserve/serve/predict_json.h"
#include "halfserve/serve/serving_error.h"
#include "halfserve/version.h"
#include "serve/rest_model_json.h"

namespace halfserve::v2 {

namespace {

// The engine's largest batch times three inputs bounds what a request can usefully hold; the shape is checked
// against it before any value is read or any memory is taken for it.
constexpr int64_t kMaxInputElements = int64_t{1} << 20;

InvalidArgument invalid(const std::string& message) { return InvalidArgument(message); }

template <typename Integer>
Integer load_little_endian(const char* bytes) {
  Integer value;
  std::memcpy(&value, bytes, sizeof value);  // x86-64 and aarch64 are little-endian, as the protocol's bytes are
  return value;
}

template <typename Value>
void append_little_endian(std::string& bytes, Value value) {
  char raw[sizeof value];
  std::memcpy(raw, &value, sizeof value);
  bytes.append(raw, sizeof value);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

std::string_view output_datatype(OutputRole role) { return role == OutputRole::label_ids ? kInt64 : kFp32; }

std::vector<int64_t> output_shape(OutputRole role, const OutputBatch& values, const ModelMetadata& metadata) {
  std::vector<int64_t> shape = rest::output_dims(role, metadata);
  shape[0] = values.batch;
  shape[1] = values.length;
  return shape;
}

// Outputs a request names, each once, or every output of the signature.
std::vector<std::string> requested_names(const std::vector<RequestedOutput>& outputs) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const RequestedOutput& output : outputs) {
    if (!seen.insert(output.name).second) throw invalid("output '" + output.name + "' is requested twice");
    names.push_back(output.name);
  }
  return names;
}

void check_distinct_inputs(const std::vector<NamedInput>& inputs) {
  std::set<std::string> seen;
  for (const NamedInput& input : inputs)
    if (input.name && !seen.insert(*input.name).second) throw invalid("input '" + *input.name + "' is given twice");
}

// The protocol has no signatures: it serves serving_default, or the model's first signature when it has none (as
// TF Serving's REST predict does without a signature_name).
const Signature& served_signature(const ModelMetadata& metadata) {
  const Signature* signature = metadata.find_signature("serving_default");
  return signature != nullptr ? *signature : metadata.default_signature();
}

std::vector<std::string> available_versions(const ModelManager& models, const std::string& name) {
  std::vector<std::string> versions;
  for (const VersionStatus& status : models.status(name))
    if (status.state == VersionState::available) versions.push_back(std::to_string(status.version));
  return versions;
}

}  // namespace

size_t datatype_size(std::string_view datatype) {
  if (datatype == kInt32 || datatype == kFp32) return 4;
  if (datatype == kInt64) return 8;
  return 0;
}

int64_t check_input_tensor(const std::string& name, std::string_view datatype, const std::vector<int64_t>& shape) {
  if (datatype != kInt32 && datatype != kInt64)
    throw invalid("input '" + name + "' has datatype " + std::string(datatype) + "; expected INT32 or INT64");
  if (shape.size() != 2)
    throw invalid("input '" + name + "' has shape " + shape_text(shape) + "; expected [batch, length]");
  if (shape[0] < 0 || shape[1] < 0) throw invalid("input '" + name + "' has a negative size in " + shape_text(shape));
  if (shape[1] != 0 && shape[0] > kMaxInputElements / shape[1])
    throw invalid("input '" + name + "' of shape " + shape_text(shape) + " has more than " +
                  std::to_string(kMaxInputElements) + " elements");
  return shape[0] * shape[1];
}

IntMatrix read_raw_matrix(const std::string& name, std::string_view datatype, const std::vector<int64_t>& shape,
                          std::string_view bytes) {
  const int64_t count = check_input_tensor(name, datatype, shape);
  const size_t width = datatype_size(datatype);
  if (bytes.size() != static_cast<size_t>(count) * width)
    throw invalid("input '" + name + "' has " + std::to_string(bytes.size()) + " bytes of data; its shape " +
                  shape_text(shape) + " of " + std::string(datatype) + " needs " +
                  std::to_string(static_cast<size_t>(count) * width));
  IntMatrix matrix{shape[0], shape[1], {}};
  matrix.values.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const char* at = bytes.data() + static_cast<size_t>(i) * width;
    if (width == 4) {
      matrix.values.push_back(load_little_endian<int32_t>(at));
      continue;
    }
    const auto value = load_little_endian<int64_t>(at);
    if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max())
      throw invalid("input '" + name + "' value " + std::to_string(value) + " at " + std::to_string(i) +
                    " is out of int32 range");
    matrix.values.push_back(static_cast<int32_t>(value));
  }
  return matrix;
}

std::optional<int64_t> parse_version(const std::string& version) {
  if (version.empty()) return std::nullopt;
  int64_t number = 0;
  const auto [end, error] = std::from_chars(version.data(), version.data() + version.size(), number);
  if (error != std::errc() || end != version.data() + version.size() || number < 0)
    throw invalid("model version '" + version.substr(0, 64) + "' is not a version number");
  return number;
}

InputBatch infer_input_batch(std::vector<NamedInput> inputs, const Signature& signature) {
  check_distinct_inputs(inputs);
  for (const NamedInput& input : inputs)
    if (!input.name) throw invalid("every input needs a name (" + input_names(signature) + ")");
  return assemble_input_batch(std::move(inputs), signature);
}

InferResponse infer(const ModelManager& models, InferRequest request) {
  const std::shared_ptr<ServedVersion> served = models.find(request.model_name, parse_version(request.model_version));
  const ModelMetadata& metadata = served->metadata();
  const Signature& signature = served_signature(metadata);
  const InputBatch inputs = infer_input_batch(std::move(request.inputs), signature);
  const auto selected = select_outputs(signature, requested_names(request.outputs), metadata.has_head());

  InferResponse response;
  response.values = served->run(inputs, output_selection(selected));
  response.model_name = served->model_name();
  response.model_version = std::to_string(served->version());
  response.id = std::move(request.id);
  for (const auto& [name, role] : selected) {
    bool binary = request.binary_outputs;
    for (const RequestedOutput& output : request.outputs)
      if (output.name == name) binary = output.binary;
    response.outputs.push_back({name, role, output_datatype(role), output_shape(role, response.values, metadata), binary});
  }
  return response;
}

std::string output_bytes(const InferResponse& response, const OutputTensor& output) {
  std::string bytes;
  const auto write_float = [&](float value) { append_little_endian(bytes, value); };
  const auto write_int = [&](int64_t value) { append_little_endian(bytes, value); };
  for_each_output_value(response, output, write_float, write_int);
  return bytes;
}

ModelMetadataV2 model_metadata(const ModelManager& models, const std::string& name, const std::string& version) {
  const std::shared_ptr<ServedVersion> served = models.find(name, parse_version(version));
  const ModelMetadata& metadata = served->metadata();
  const Signature& signature = served_signature(metadata);
  ModelMetadataV2 result;
  result.name = served->model_name();
  result.versions = available_versions(models, name);
  result.platform = "halfserve";
  for (const auto& [input, role] : signature.inputs) result.inputs.push_back({input, kInt32, {-1, -1}});
  for (const auto& [output, role] : signature.outputs)
    result.outputs.push_back({output, output_datatype(role), rest::output_dims(role, metadata)});
  return result;
}

bool model_ready(const ModelManager& models, const std::string& name, const std::string& version) {
  const std::optional<int64_t> wanted = parse_version(version);
  try {
    for (const VersionStatus& status : models.status(name, wanted))
      if (status.state == VersionState::available) return true;
  } catch (const ServingError& error) {
    // An unknown version of a known model is simply not ready; an unknown model stays NOT_FOUND.
    const std::vector<std::string> known = models.model_names();
    if (!wanted || error.code() != ServingCode::not_found || std::find(known.begin(), known.end(), name) == known.end())
      throw;
  }
  return false;
}

ServerMetadataV2 server_metadata() { return {"halfserve", kVersion, {"binary_tensor_data"}}; }

}  // namespace halfserve::v2
