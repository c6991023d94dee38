#include "halfserve/serve/predict_json.h"

#include <array>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "halfserve/util/error.h"
#include "serve/json_numbers.h"

namespace halfserve {

using nlohmann::json;

namespace {

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
        append_json_int(out, static_cast<int64_t>(values[static_cast<size_t>(b * length + t)]));
        continue;
      }
      out += '[';
      const T* row = values.data() + (b * length + t) * width;
      for (int64_t w = 0; w < width; ++w) {
        if (w > 0) out += ',';
        if constexpr (std::is_floating_point_v<T>) append_json_float(out, row[w]);
        else append_json_int(out, row[w]);
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
