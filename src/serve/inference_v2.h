#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/serve/model_manager.h"
#include "serve/named_inputs.h"

// The Open Inference Protocol (KServe v2, as Triton and KServe speak it) without its wire formats: REST (JSON and
// binary tensors) and gRPC read their requests into an InferRequest and write an InferResponse back; `infer` is the
// one path between, through the same input checks, batch scheduler and limits as TF Serving's Predict.
namespace halfserve::v2 {

// The protocol's names for the types halfserve takes and gives.
inline constexpr std::string_view kInt32 = "INT32";
inline constexpr std::string_view kInt64 = "INT64";
inline constexpr std::string_view kFp32 = "FP32";

// Bytes per element of a datatype the protocol names; 0 for one halfserve does not read (BYTES, BOOL, FP16, ...).
size_t datatype_size(std::string_view datatype);

// Checks an input tensor's description before its values are read: INT32 or INT64, rank 2, sizes that are not
// negative and whose product fits. Returns the element count. Throws InvalidArgument naming the input.
int64_t check_input_tensor(const std::string& name, std::string_view datatype, const std::vector<int64_t>& shape);

// `count` little-endian INT32 or INT64 values into int32, as a [shape[0], shape[1]] matrix; an INT64 value outside
// int32 is an error naming the input. `bytes` must hold exactly count * datatype_size bytes.
IntMatrix read_raw_matrix(const std::string& name, std::string_view datatype, const std::vector<int64_t>& shape,
                          std::string_view bytes);

struct RequestedOutput {
  std::string name;
  bool binary = false;  // REST: the values go after the JSON header (the binary tensor extension)
};

struct InferRequest {
  std::string model_name;
  std::string model_version;  // "" : the newest available
  std::string id;             // echoed in the response
  std::vector<NamedInput> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every output of the model's default signature
  bool binary_outputs = false;           // REST's "binary_data_output" request parameter
};

struct OutputTensor {
  std::string name;
  OutputRole role = OutputRole::logits;
  std::string_view datatype;  // FP32, or INT64 for label ids
  std::vector<int64_t> shape;
  bool binary = false;
};

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::vector<OutputTensor> outputs;
  OutputBatch values;
};

// The version a request names: "" is none; anything but a non-negative decimal integer is INVALID_ARGUMENT.
std::optional<int64_t> parse_version(const std::string& version);

// A request's inputs as the engine's batch for the signature: each named once, then assemble_input_batch's checks
// and messages. Throws InvalidArgument naming the problem.
InputBatch infer_input_batch(std::vector<NamedInput> inputs, const Signature& signature);

// Runs a request: finds the model version (NOT_FOUND naming it), checks the inputs against the default signature
// (assemble_input_batch's checks and messages), selects the outputs (INVALID_ARGUMENT for a name the model cannot
// produce), and waits for the version's batch scheduler.
InferResponse infer(const ModelManager& models, InferRequest request);

// An output's values, little-endian and row-major, as the binary extension and gRPC's raw_output_contents carry them.
std::string output_bytes(const InferResponse& response, const OutputTensor& output);

// An output's values for a JSON reply: appends each value to `write` in order, as the tensor's datatype.
template <typename FloatWriter, typename IntWriter>
void for_each_output_value(const InferResponse& response, const OutputTensor& output, FloatWriter&& write_float,
                           IntWriter&& write_int);

struct TensorMetadata {
  std::string name;
  std::string_view datatype;
  std::vector<int64_t> shape;  // -1: any size
};

struct ModelMetadataV2 {
  std::string name;
  std::vector<std::string> versions;  // the versions available now
  std::string platform;
  std::vector<TensorMetadata> inputs;
  std::vector<TensorMetadata> outputs;
};

// The model's metadata for the version asked for (NOT_FOUND when it is not served).
ModelMetadataV2 model_metadata(const ModelManager& models, const std::string& name, const std::string& version);

// True when the version asked for (or, with "", any version of the model) is available; NOT_FOUND for a model the
// server does not know.
bool model_ready(const ModelManager& models, const std::string& name, const std::string& version);

// The server's name, version and protocol extensions, for server metadata.
struct ServerMetadataV2 {
  std::string name;
  std::string version;
  std::vector<std::string> extensions;
};
ServerMetadataV2 server_metadata();

// Implementation of the template above.
template <typename FloatWriter, typename IntWriter>
void for_each_output_value(const InferResponse& response, const OutputTensor& output, FloatWriter&& write_float,
                           IntWriter&& write_int) {
  const OutputBatch& values = response.values;
  switch (output.role) {
    case OutputRole::label_ids:
      for (const int32_t label : values.label_ids) write_int(static_cast<int64_t>(label));
      return;
    case OutputRole::logits:
      for (const float value : values.logits) write_float(value);
      return;
    case OutputRole::probabilities:
      for (const float value : values.probabilities) write_float(value);
      return;
    case OutputRole::last_hidden_state:
      for (const float value : values.last_hidden_state) write_float(value);
      return;
  }
}

}  // namespace halfserve::v2
