#pragma once

#include <string>
#include <vector>

#include "halfserve/bench/latency_grid.h"

namespace halfserve {

// The model's GEMMs alone (QKV, attention output, FFN in and out per layer, and the head), through the same
// backend and precision, with no attention, LayerNorm or embedding: the limit the whole model can approach.
GridSeries run_gemm_series(const BertConfig& config, int64_t num_labels, Precision precision, const GridOptions& options,
                           const GridInputs& inputs);

// A Python peer (torch, onnxruntime, openvino, ctranslate2, tensorflow) run as a subprocess on the same frozen
// file and inputs; one series per precision it was asked for (skipped ones say why). Throws Error when the peer
// cannot be started at all (its environment could not be created, say).
std::vector<GridSeries> run_python_peer(const std::string& peer, const std::string& model_path,
                                        const std::vector<std::string>& precisions, const GridOptions& options,
                                        const GridInputs& inputs);

}  // namespace halfserve
