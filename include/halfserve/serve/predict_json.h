#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/format/model_metadata.h"

// TF Serving's REST predict body, both forms: row ("instances") and column ("inputs").
namespace halfserve {

struct PredictRequest {
  const Signature* signature = nullptr;
  bool row_format = false;  // "instances" (reply "predictions") or "inputs" (reply "outputs")
  InputBatch inputs;
};

// Parses and checks a request against the model's signatures; throws InvalidArgument naming the problem
// (malformed JSON, unknown signature or input, ragged or mismatched shapes, non-integer ids).
PredictRequest parse_predict_request(std::string_view body, const ModelMetadata& metadata);

// The outputs to compute and return: `requested` names (signature output names or role names), or all of the
// signature's outputs when empty. Throws InvalidArgument for a name the model cannot produce.
std::vector<std::pair<std::string, OutputRole>> select_outputs(const Signature& signature,
                                                               const std::vector<std::string>& requested,
                                                               bool has_head);

// The reply body: {"outputs": …} for column requests (a bare value when one output), {"predictions": […]}
// for row requests. Floats are written in shortest round-trip form.
std::string format_predict_response(const PredictRequest& request, const OutputBatch& outputs,
                                    const std::vector<std::pair<std::string, OutputRole>>& selected,
                                    int64_t num_labels, int64_t hidden_size);

OutputSelection output_selection(const std::vector<std::pair<std::string, OutputRole>>& selected);

}  // namespace halfserve
