#include "halfserve/serve/predict_json.h"

#include <array>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"

namespace halfserve {

using nlohmann::json;

namespace {

// Values a predict body may hold: three inputs (ids, mask, type ids) of the engine's largest batch, plus names and
// options. A body of more can never run, and parsing stops there instead of building it: a 63 MB body of small
// ints once cost 1.16 GB as a document.
constexpr size_t kMaxPredictJsonValues = 3 * (size_t{1} << 18) + 4096;

std::string known_inputs(const Signature& signature) {
  std::string names;
  for (const auto& [name, role] : signature.inputs) names += (names.empty() ? "" : ", ") + name;
  return names;
}

// Reads one row of integer ids.
std::vector<int32_t> parse_row(const json& row, const std::string& what) {
  if (!row.is_array()) throw InvalidArgument(what + " must be an array of integers, got " + std::string(row.type_name()));
  std::vector<int32_t> values;
  values.reserve(row.size());
  for (size_t i = 0; i < row.size(); ++i) {
    const json& value = row[i];
    int64_t number = 0;
    if (value.is_number_integer()) {
      number = value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                   ? std::numeric_limits<int64_t>::max()
                   : value.get<int64_t>();
    } else if (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>() &&
               std::fabs(value.get<double>()) < 1e15) {
      number = static_cast<int64_t>(value.get<double>());  // 3.0 is an integer; TF Serving accepts it too
    } else {
      // Arrays and objects are named, not dumped: dump() recurses once per nesting level (stack overflow).
      throw InvalidArgument(what + "[" + std::to_string(i) + "] is not an integer: " +
                            (value.is_structured() ? "a JSON " + std::string(value.type_name()) : value.dump()));
    }
    if (number < std::numeric_limits<int32_t>::min() || number > std::numeric_limits<int32_t>::max())
      throw InvalidArgument(what + "[" + std::to_string(i) + "] = " + std::to_string(number) + " is out of int32 range");
    values.push_back(static_cast<int32_t>(number));
  }
  return values;
}

struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<int32_t> values;
};

void append_row(Matrix& matrix, const std::vector<int32_t>& row, const std::string& name) {
  if (matrix.rows == 0) {
    matrix.cols = static_cast<int64_t>(row.size());
  } else if (static_cast<int64_t>(row.size()) != matrix.cols) {
    throw InvalidArgument(name + " is ragged: row " + std::to_string(matrix.rows) + " has " + std::to_string(row.size()) +
                          " values, row 0 has " + std::to_string(matrix.cols) + " (pad rows to one length and mask the padding)");
  }
  matrix.values.insert(matrix.values.end(), row.begin(), row.end());
  ++matrix.rows;
}

Matrix parse_matrix(const json& value, const std::string& name) {
  if (!value.is_array()) throw InvalidArgument("input '" + name + "' must be a 2-D array [batch, length]");
  Matrix matrix;
  for (size_t r = 0; r < value.size(); ++r) append_row(matrix, parse_row(value[r], name + "[" + std::to_string(r) + "]"), name);
  return matrix;
}

// [rows, cols] of each input given, indexed by InputRole, so masks are checked against the ids' shape.
using InputShapes = std::array<std::optional<std::pair<int64_t, int64_t>>, 3>;

void assign(InputBatch& batch, InputRole role, Matrix matrix, const std::string& name, bool& have_ids,
            InputShapes& shapes) {
  shapes[static_cast<size_t>(role)] = std::pair{matrix.rows, matrix.cols};
  switch (role) {
    case InputRole::input_ids:
      batch.batch = matrix.rows;
      batch.length = matrix.cols;
      batch.input_ids = std::move(matrix.values);
      have_ids = true;
      return;
    case InputRole::attention_mask: batch.attention_mask = std::move(matrix.values); break;
    case InputRole::token_type_ids: batch.token_type_ids = std::move(matrix.values); break;
  }
  (void)name;
}

void append_float(std::string& out, float value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
  // Keep floats recognisable as floats ("7.0", "-0.0"), as TF Serving writes them.
  if (std::find_if(buffer, result.ptr, [](char c) { return c == '.' || c == 'e'; }) == result.ptr) out += ".0";
}

void append_int(std::string& out, int64_t value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}

// Writes rows [first, first+count) of a [batch, length, width] tensor (width 0: [batch, length] label ids).
template <typename T>
void append_tensor(std::string& out, const std::vector<T>& values, int64_t first, int64_t count, int64_t length,
                   int64_t width, bool keep_batch_dim) {
  if (keep_batch_dim) out += '[';
  for (int64_t b = first; b < first + count; ++b) {
    if (b > first) out += ',';
    out += '[';
    for (int64_t t = 0; t < length; ++t) {
      if (t > 0) out += ',';
      if (width == 0) {
        append_int(out, static_cast<int64_t>(values[static_cast<size_t>(b * length + t)]));
        continue;
      }
      out += '[';
      const T* row = values.data() + (b * length + t) * width;
      for (int64_t w = 0; w < width; ++w) {
        if (w > 0) out += ',';
        if constexpr (std::is_floating_point_v<T>) append_float(out, row[w]);
        else append_int(out, row[w]);
      }
      out += ']';
    }
    out += ']';
  }
  if (keep_batch_dim) out += ']';
}

void append_output(std::string& out, const OutputBatch& outputs, OutputRole role, int64_t first, int64_t count,
                   int64_t num_labels, int64_t hidden_size, bool keep_batch_dim) {
  switch (role) {
    case OutputRole::logits:
      append_tensor(out, outputs.logits, first, count, outputs.length, num_labels, keep_batch_dim);
      break;
    case OutputRole::label_ids:
      append_tensor(out, outputs.label_ids, first, count, outputs.length, 0, keep_batch_dim);
      break;
    case OutputRole::last_hidden_state:
      append_tensor(out, outputs.last_hidden_state, first, count, outputs.length, hidden_size, keep_batch_dim);
      break;
    case OutputRole::probabilities:
      append_tensor(out, outputs.probabilities, first, count, outputs.length, num_labels, keep_batch_dim);
      break;
  }
}

}  // namespace

PredictRequest parse_predict_request(std::string_view body, const ModelMetadata& metadata) {
  json document;
  try {
    document = parse_bounded_json(body, "request", kMaxPredictJsonValues);
  } catch (const json::exception& e) {
    throw InvalidArgument(std::string("malformed JSON request: ") + e.what());
  } catch (const Error& e) {  // well-formed so far, but past a bound (nesting, value count)
    throw InvalidArgument(std::string("request refused: ") + e.what());
  }
  if (!document.is_object()) throw InvalidArgument("request must be a JSON object with \"instances\" or \"inputs\"");
  PredictRequest request;
  std::string signature_name = "serving_default";
  if (document.contains("signature_name")) {
    if (!document["signature_name"].is_string()) throw InvalidArgument("signature_name must be a string");
    signature_name = document["signature_name"].get<std::string>();
  }
  request.signature = metadata.find_signature(signature_name);
  if (request.signature == nullptr) {
    if (document.contains("signature_name")) throw InvalidArgument("unknown signature_name '" + signature_name + "'");
    request.signature = &metadata.default_signature();
  }
  const Signature& signature = *request.signature;
  const bool has_instances = document.contains("instances"), has_inputs = document.contains("inputs");
  if (has_instances == has_inputs)
    throw InvalidArgument(has_inputs ? "request has both \"instances\" and \"inputs\"; send one"
                                     : "request has neither \"instances\" nor \"inputs\"");
  request.row_format = has_instances;
  const std::string ids_name = *signature.input_name(InputRole::input_ids);
  bool have_ids = false;
  InputShapes shapes;
  auto role_of = [&](const std::string& name) {
    const auto role = signature.input_role(name);
    if (!role)
      throw InvalidArgument("input '" + name + "' is not an input of signature '" + signature.name + "' (inputs: " +
                            known_inputs(signature) + ")");
    return *role;
  };

  if (has_inputs) {
    const json& inputs = document["inputs"];
    if (inputs.is_object()) {
      for (const auto& [name, value] : inputs.items()) assign(request.inputs, role_of(name), parse_matrix(value, name), name, have_ids, shapes);
    } else {
      assign(request.inputs, InputRole::input_ids, parse_matrix(inputs, ids_name), ids_name, have_ids, shapes);
    }
  } else {
    const json& instances = document["instances"];
    if (!instances.is_array()) throw InvalidArgument("\"instances\" must be a list");
    std::map<std::string, Matrix> columns;
    for (size_t r = 0; r < instances.size(); ++r) {
      const json& instance = instances[r];
      const std::string where = "instances[" + std::to_string(r) + "]";
      if (instance.is_object()) {
        if (r > 0 && instance.size() != columns.size())
          throw InvalidArgument(where + " names different inputs than instances[0]");
        for (const auto& [name, value] : instance.items()) {
          role_of(name);
          if (r > 0 && !columns.count(name)) throw InvalidArgument(where + " names input '" + name + "' that instances[0] lacks");
          append_row(columns[name], parse_row(value, where + "." + name), name);
        }
      } else {
        append_row(columns[ids_name], parse_row(instance, where), ids_name);
      }
    }
    for (auto& [name, matrix] : columns) assign(request.inputs, role_of(name), std::move(matrix), name, have_ids, shapes);
  }
  if (!have_ids) throw InvalidArgument("request has no '" + ids_name + "' input");
  const auto dims = [](const std::pair<int64_t, int64_t>& shape) {
    return "[" + std::to_string(shape.first) + ", " + std::to_string(shape.second) + "]";
  };
  const auto ids_shape = *shapes[static_cast<size_t>(InputRole::input_ids)];
  // Compare shapes, not value counts: a [2, 2] mask must not pass for [1, 4] ids.
  for (const InputRole role : {InputRole::attention_mask, InputRole::token_type_ids}) {
    const auto& shape = shapes[static_cast<size_t>(role)];
    if (shape && *shape != ids_shape)
      throw InvalidArgument("'" + signature.input_name(role).value_or(std::string(input_role_name(role))) + "' " +
                            dims(*shape) + " does not have the shape of '" + ids_name + "' " + dims(ids_shape));
  }
  return request;
}

std::vector<std::pair<std::string, OutputRole>> select_outputs(const Signature& signature,
                                                               const std::vector<std::string>& requested, bool has_head) {
  if (requested.empty()) return signature.outputs;
  std::vector<std::pair<std::string, OutputRole>> selected;
  for (const auto& name : requested) {
    std::optional<OutputRole> role;
    for (const auto& [output, output_role] : signature.outputs)
      if (output == name) role = output_role;
    if (!role) role = parse_output_role(name);
    if (!role) throw InvalidArgument("unknown output '" + name + "' (signature '" + signature.name + "')");
    if (*role != OutputRole::last_hidden_state && !has_head)
      throw InvalidArgument("output '" + name + "' needs a classification head, which this model lacks");
    selected.emplace_back(name, *role);
  }
  return selected;
}

OutputSelection output_selection(const std::vector<std::pair<std::string, OutputRole>>& selected) {
  OutputSelection selection{false, false, false};
  for (const auto& [name, role] : selected) {
    selection.logits |= role == OutputRole::logits;
    selection.label_ids |= role == OutputRole::label_ids;
    selection.last_hidden_state |= role == OutputRole::last_hidden_state;
    selection.probabilities |= role == OutputRole::probabilities;
  }
  return selection;
}

std::string format_predict_response(const PredictRequest& request, const OutputBatch& outputs,
                                    const std::vector<std::pair<std::string, OutputRole>>& selected,
                                    int64_t num_labels, int64_t hidden_size) {
  std::string out;
  auto key = [&](const std::string& name) { out += json(name).dump() + ":"; };
  if (!request.row_format) {
    out += "{\"outputs\":";
    if (selected.size() == 1) {
      append_output(out, outputs, selected[0].second, 0, outputs.batch, num_labels, hidden_size, true);
    } else {
      out += '{';
      for (size_t i = 0; i < selected.size(); ++i) {
        if (i > 0) out += ',';
        key(selected[i].first);
        append_output(out, outputs, selected[i].second, 0, outputs.batch, num_labels, hidden_size, true);
      }
      out += '}';
    }
    return out + "}";
  }
  out += "{\"predictions\":[";
  for (int64_t b = 0; b < outputs.batch; ++b) {
    if (b > 0) out += ',';
    if (selected.size() == 1) {
      append_output(out, outputs, selected[0].second, b, 1, num_labels, hidden_size, false);
      continue;
    }
    out += '{';
    for (size_t i = 0; i < selected.size(); ++i) {
      if (i > 0) out += ',';
      key(selected[i].first);
      append_output(out, outputs, selected[i].second, b, 1, num_labels, hidden_size, false);
    }
    out += '}';
  }
  return out + "]}";
}

}  // namespace halfserve
