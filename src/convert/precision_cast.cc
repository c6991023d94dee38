#include "halfserve/convert/precision_cast.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "halfserve/format/bert_tensors.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"

namespace halfserve {

namespace {

// Largest finite value of the target type and the conversion into it.
struct TargetFormat {
  float max_value;
  uint16_t (*encode)(float);
  float (*decode)(uint16_t);
};

TargetFormat target_format(DType target) {
  if (target == DType::f16) return {kHalfMax, float_to_half, half_to_float};
  return {kBfloat16Max, float_to_bfloat16, bfloat16_to_float};
}

void store(std::vector<std::byte>& destination, int64_t index, const void* value, size_t size) {
  std::memcpy(destination.data() + index * static_cast<int64_t>(size), value, size);
}

}  // namespace

TensorCastReport cast_tensor(const std::string& name, const TensorView& source, DType target, bool allow_nonfinite,
                             std::vector<std::byte>& destination) {
  TensorCastReport report;
  report.name = name;
  report.source_dtype = source.dtype;
  report.target_dtype = target;
  report.numel = source.numel();
  if (!is_floating(source.dtype)) throw Error("tensor " + name + " is not floating point");
  if (target != DType::f32 && target != DType::f16 && target != DType::bf16)
    throw Error("cannot cast tensor " + name + " to " + std::string(dtype_name(target)));

  destination.assign(static_cast<size_t>(report.numel) * dtype_size(target), std::byte{0});
  const TargetFormat format = target == DType::f32 ? TargetFormat{} : target_format(target);
  for (int64_t i = 0; i < report.numel; ++i) {
    float value = source.float_at(i);
    if (std::isnan(value)) {
      ++report.nan_count;
      value = 0.0f;
    } else if (std::isinf(value)) {
      ++report.inf_count;
      value = std::copysign(target == DType::f32 ? std::numeric_limits<float>::max() : format.max_value, value);
    } else {
      report.max_abs = std::max(report.max_abs, std::fabs(value));
    }
    if (target == DType::f32) {
      store(destination, i, &value, sizeof value);
      continue;
    }
    uint16_t bits = format.encode(value);
    float result = format.decode(bits);
    if (std::isinf(result)) {
      if (!std::isinf(source.float_at(i))) ++report.clamped;
      bits = format.encode(std::copysign(format.max_value, value));
      result = format.decode(bits);
    } else if (result == 0.0f && value != 0.0f) {
      ++report.underflowed;
    }
    if (std::isfinite(source.float_at(i)) && std::fabs(value) <= format.max_value)
      report.max_abs_error = std::max(report.max_abs_error, static_cast<double>(std::fabs(result - value)));
    store(destination, i, &bits, sizeof bits);
  }
  if ((report.nan_count > 0 || report.inf_count > 0) && !allow_nonfinite)
    throw Error("tensor " + name + " holds " + std::to_string(report.nan_count) + " NaN and " +
                std::to_string(report.inf_count) + " Inf values; refusing to convert (allow non-finite values to "
                "replace NaN with 0 and clamp Inf, e.g. halfserve convert --allow-nonfinite)");
  return report;
}

FrozenModel cast_model(const FrozenModel& source, const CastOptions& options) {
  FrozenModel result;
  result.metadata = source.metadata;
  result.metadata.provenance.precision = options.precision;
  result.metadata.provenance.conversion_report.clear();
  const DType weight_dtype = storage_dtype(options.precision);

  std::vector<std::string> refused;
  for (const auto& expected : expected_bert_tensors(source.metadata.config, static_cast<int64_t>(source.metadata.labels.size()))) {
    const TensorView& tensor = source.tensors.at(expected.name);
    const bool keep_fp32 = expected.role == TensorRole::layer_norm;
    std::vector<std::byte> bytes;
    TensorCastReport report;
    try {
      report = cast_tensor(expected.name, tensor, keep_fp32 ? DType::f32 : weight_dtype, options.allow_nonfinite, bytes);
    } catch (const Error& e) {
      refused.push_back(e.what());
      continue;
    }
    report.kept_fp32 = keep_fp32 && weight_dtype != DType::f32;
    result.tensors.add_owned(expected.name, report.target_dtype, tensor.shape, std::move(bytes));
    result.metadata.provenance.conversion_report.push_back(std::move(report));
  }
  if (!refused.empty()) {
    std::string message = "conversion to " + std::string(precision_name(options.precision)) + " refused:";
    for (const auto& reason : refused) message += "\n  " + reason;
    throw Error(message);
  }
  return result;
}

std::string format_cast_report(const std::vector<TensorCastReport>& report) {
  int64_t values = 0, clamped = 0, underflowed = 0, nans = 0, infs = 0, kept = 0;
  double worst_error = 0;
  std::string worst_tensor;
  std::ostringstream lines;
  for (const auto& r : report) {
    values += r.numel;
    clamped += r.clamped;
    underflowed += r.underflowed;
    nans += r.nan_count;
    infs += r.inf_count;
    kept += r.kept_fp32 ? 1 : 0;
    if (r.max_abs_error > worst_error) {
      worst_error = r.max_abs_error;
      worst_tensor = r.name;
    }
    if (r.clamped || r.underflowed || r.nan_count || r.inf_count)
      lines << "  " << r.name << " (" << dtype_name(r.source_dtype) << " -> " << dtype_name(r.target_dtype)
            << "): max |x| " << r.max_abs << ", clamped " << r.clamped << ", underflowed to 0 " << r.underflowed
            << ", NaN " << r.nan_count << ", Inf " << r.inf_count << "\n";
  }
  std::ostringstream out;
  out << "conversion report: " << report.size() << " tensors, " << values << " values; clamped to range " << clamped
      << ", underflowed to 0 " << underflowed << ", NaN replaced " << nans << ", Inf clamped " << infs
      << "; kept in fp32 " << kept << " (LayerNorm)";
  if (!worst_tensor.empty()) out << "; largest rounding error " << worst_error << " in " << worst_tensor;
  out << "\n" << lines.str();
  return out.str();
}

}  // namespace halfserve
