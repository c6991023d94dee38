#include "serve/rest_v2.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "serve/json_numbers.h"

namespace halfserve::rest {

namespace {

using nlohmann::ordered_json;

std::string dump(const ordered_json& document) {
  return document.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

ordered_json tensor_metadata(const v2::TensorMetadata& tensor) {
  return {{"name", tensor.name}, {"datatype", tensor.datatype}, {"shape", tensor.shape}};
}

// A string as a JSON value ("a\"b"), through the library: names and ids come from clients.
std::string json_string(const std::string& text) { return dump(ordered_json(text)); }

void append_shape(std::string& out, const std::vector<int64_t>& shape) {
  out += '[';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ',';
    append_json_int(out, shape[i]);
  }
  out += ']';
}

// The values of a JSON output, flat and row-major as the protocol sends them.
void append_data(std::string& out, const v2::InferResponse& response, const v2::OutputTensor& output) {
  out += '[';
  bool first = true;
  const auto separate = [&] {
    if (!first) out += ',';
    first = false;
  };
  for_each_output_value(
      response, output,
      [&](float value) {
        separate();
        append_json_float(out, value);
      },
      [&](int64_t value) {
        separate();
        append_json_int(out, value);
      });
  out += ']';
}

}  // namespace

InferReplyBody write_infer_response(const v2::InferResponse& response) {
  InferReplyBody reply;
  std::string& out = reply.body;
  std::string binary;
  out += "{\"model_name\":" + json_string(response.model_name);
  out += ",\"model_version\":" + json_string(response.model_version);
  if (!response.id.empty()) out += ",\"id\":" + json_string(response.id);
  out += ",\"outputs\":[";
  for (size_t i = 0; i < response.outputs.size(); ++i) {
    const v2::OutputTensor& output = response.outputs[i];
    if (i > 0) out += ',';
    out += "{\"name\":" + json_string(output.name) + ",\"datatype\":\"" + std::string(output.datatype) + "\",\"shape\":";
    append_shape(out, output.shape);
    if (output.binary) {
      const std::string bytes = v2::output_bytes(response, output);
      out += ",\"parameters\":{\"binary_data_size\":";
      append_json_int(out, static_cast<int64_t>(bytes.size()));
      out += '}';
      binary += bytes;
    } else {
      out += ",\"data\":";
      append_data(out, response, output);
    }
    out += '}';
  }
  out += "]}";
  if (!binary.empty() || std::any_of(response.outputs.begin(), response.outputs.end(),
                                     [](const v2::OutputTensor& output) { return output.binary; })) {
    reply.header_length = out.size();
    out += binary;
  }
  return reply;
}

std::string server_metadata_json(const v2::ServerMetadataV2& metadata) {
  return dump({{"name", metadata.name}, {"version", metadata.version}, {"extensions", metadata.extensions}});
}

std::string model_metadata_json(const v2::ModelMetadataV2& metadata) {
  ordered_json inputs = ordered_json::array(), outputs = ordered_json::array();
  for (const v2::TensorMetadata& input : metadata.inputs) inputs.push_back(tensor_metadata(input));
  for (const v2::TensorMetadata& output : metadata.outputs) outputs.push_back(tensor_metadata(output));
  return dump({{"name", metadata.name},
               {"versions", metadata.versions},
               {"platform", metadata.platform},
               {"inputs", inputs},
               {"outputs", outputs}});
}

}  // namespace halfserve::rest
