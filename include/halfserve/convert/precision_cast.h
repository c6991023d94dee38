#pragma once

#include <string>
#include <vector>

#include "halfserve/format/frozen_model.h"

namespace halfserve {

struct CastOptions {
  Precision precision = Precision::fp32;
  // NaN and Inf in the source are an error unless allowed; when allowed, NaN becomes 0 and ±Inf the largest
  // finite value of the target, and the report counts them. A written file never holds NaN or Inf.
  bool allow_nonfinite = false;
};

// Casts every weight to the target precision. LayerNorm parameters stay fp32: they scale the normalised
// activations directly, are a negligible share of the file, and fp16 would round eps-scale differences away.
// The result owns its tensors; its provenance carries the precision and the per-tensor report.
FrozenModel cast_model(const FrozenModel& source, const CastOptions& options);

// Casts one tensor's values into `target` bytes, filling the report.
TensorCastReport cast_tensor(const std::string& name, const TensorView& source, DType target, bool allow_nonfinite,
                             std::vector<std::byte>& destination);

// A human-readable summary: totals, then one line per tensor the cast changed noticeably.
std::string format_cast_report(const std::vector<TensorCastReport>& report);

}  // namespace halfserve
