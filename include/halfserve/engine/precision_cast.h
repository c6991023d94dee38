#pragma once

#include <string>
#include <vector>

#include "halfserve/format/frozen_model.h"

// The precision cast lives in the engine: the engine runs a file at another precision than it was written in
// (`--precision`) by casting it at load, and `halfserve convert` writes the same cast to a file.
namespace halfserve {

struct CastOptions {
  Precision precision = Precision::fp32;
  // NaN and Inf in the source are an error unless allowed; when allowed, NaN becomes 0 and ±Inf the largest
  // finite value of the target, and the report counts them. A written file never holds NaN or Inf.
  bool allow_nonfinite = false;
};

// Casts every weight to the target precision. LayerNorm parameters stay fp32: they scale the normalised
// activations directly, are a negligible share of the file, and fp16 would round eps-scale differences away.
// int8 quantizes the encoder's GEMM weights and the word embeddings per row (quantize_weight) and keeps
// everything else in float: the position and type tables and the classifier weight fp16, biases and LayerNorm fp32. An int8 source is dequantized (I8 × scale)
// before a cast to another precision; int8 to int8 keeps the quantized values and scales as they are.
// The result owns its tensors; its provenance carries the precision and the per-tensor report.
FrozenModel cast_model(const FrozenModel& source, const CastOptions& options);

// Casts one tensor's values into `target` bytes (F32, F16 or BF16), filling the report.
TensorCastReport cast_tensor(const std::string& name, const TensorView& source, DType target, bool allow_nonfinite,
                             std::vector<std::byte>& destination);

// A [out, in] weight quantized symmetrically per output channel: weight[o][i] ≈ values[o][i] * scales[o].
struct QuantizedWeight {
  std::vector<int8_t> values;  // [out, in], in [-127, 127]
  std::vector<float> scales;   // [out]
  TensorCastReport report;     // max_abs_error: the largest |values × scale − weight|
};

// scale[o] = max_i |w[o][i]| / 127 (1 for an all-zero row), values = round-to-nearest-even(w / scale). NaN and
// Inf follow cast_tensor's rule; when allowed, NaN becomes 0 and ±Inf ±127 (the row's largest level), the scale
// coming from the row's finite values.
QuantizedWeight quantize_weight(const std::string& name, const TensorView& weight, bool allow_nonfinite);

// A human-readable summary: totals, then one line per tensor the cast changed noticeably.
std::string format_cast_report(const std::vector<TensorCastReport>& report);

}  // namespace halfserve
