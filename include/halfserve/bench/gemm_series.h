#pragma once

#include "halfserve/bench/latency_grid.h"

namespace halfserve {

// The model's GEMMs alone (QKV, attention output, FFN in and out per layer, and the head), through the same
// backend and precision, with no attention, LayerNorm or embedding: the limit the whole model can approach.
GridSeries run_gemm_series(const BertConfig& config, int64_t num_labels, Precision precision, const GridOptions& options,
                           const GridInputs& inputs);

}  // namespace halfserve
