#include "halfserve/engine/precision_cast.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
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

// Largest magnitude an int8 level may take: symmetric, so -128 is never used and negation stays exact.
constexpr int kInt8MaxLevel = 127;

void refuse_nonfinite(const TensorCastReport& report, bool allow_nonfinite) {
  if ((report.nan_count > 0 || report.inf_count > 0) && !allow_nonfinite)
    throw Error("tensor " + report.name + " holds " + std::to_string(report.nan_count) + " NaN and " +
                std::to_string(report.inf_count) + " Inf values; refusing to convert (allow non-finite values to "
                "replace NaN with 0 and clamp Inf, e.g. halfserve convert --allow-nonfinite)");
}

template <typename T>
std::vector<std::byte> bytes_of(const std::vector<T>& values) {
  const auto bytes = std::as_bytes(std::span(values));
  return {bytes.begin(), bytes.end()};
}

// The dtype a tensor takes in a file of `precision`.
DType target_dtype(const ExpectedTensor& expected, Precision precision) {
  if (expected.role == TensorRole::layer_norm) return DType::f32;
  if (expected.dtype) return *expected.dtype;
  if (precision != Precision::int8) return storage_dtype(precision);
  // Besides the encoder's GEMM weights and the word embeddings (fixed I8 above), nothing is quantized: the
  // position and type tables are small, and the small classifier decides every label, so they stay fp16; biases
  // are added to the f32 result, so stay f32.
  return expected.role == TensorRole::bias ? DType::f32 : DType::f16;
}

// The tensor's values as floats: I8 weights dequantized with their scales, other tensors as they are.
TensorView float_view(const TensorStore& tensors, const std::string& name, std::vector<float>& storage) {
  const TensorView& tensor = tensors.at(name);
  if (tensor.dtype != DType::i8) return tensor;
  const std::vector<float> scales = tensors.at(bert_names::weight_scale(name)).to_float();
  const int64_t rows = tensor.shape.at(0), cols = tensor.numel() / std::max<int64_t>(1, rows);
  const auto* levels = reinterpret_cast<const int8_t*>(tensor.data.data());
  storage.resize(static_cast<size_t>(tensor.numel()));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) storage[r * cols + c] = static_cast<float>(levels[r * cols + c]) * scales[r];
  return TensorView{DType::f32, tensor.shape, std::as_bytes(std::span(storage))};
}

// An int8 weight carried over unchanged (int8 to int8), with a report of what it holds.
QuantizedWeight copy_quantized(const TensorStore& tensors, const std::string& name) {
  const TensorView& tensor = tensors.at(name);
  QuantizedWeight result;
  const auto* levels = reinterpret_cast<const int8_t*>(tensor.data.data());
  result.values.assign(levels, levels + tensor.numel());
  result.scales = tensors.at(bert_names::weight_scale(name)).to_float();
  result.report.name = name;
  result.report.source_dtype = result.report.target_dtype = DType::i8;
  result.report.numel = tensor.numel();
  const int64_t cols = tensor.numel() / std::max<int64_t>(1, tensor.shape.at(0));
  for (int64_t i = 0; i < tensor.numel(); ++i)
    result.report.max_abs = std::max(result.report.max_abs, std::fabs(levels[i] * result.scales[i / cols]));
  return result;
}

// Adds `expected` to `result`, cast from `source` to the target precision, and returns its report.
TensorCastReport add_cast_tensor(const TensorStore& source, const ExpectedTensor& expected, const CastOptions& options,
                                 FrozenModel& result) {
  const DType source_dtype = source.at(expected.name).dtype;
  const DType target = target_dtype(expected, options.precision);
  std::vector<float> dequantized;
  if (target == DType::i8) {
    QuantizedWeight quantized =
        source_dtype == DType::i8
            ? copy_quantized(source, expected.name)
            : quantize_weight(expected.name, float_view(source, expected.name, dequantized), options.allow_nonfinite);
    const int64_t out = expected.shape.at(0);
    result.tensors.add_owned(expected.name, DType::i8, expected.shape, bytes_of(quantized.values));
    result.tensors.add_owned(bert_names::weight_scale(expected.name), DType::f32, {out}, bytes_of(quantized.scales));
    return quantized.report;
  }
  std::vector<std::byte> bytes;
  TensorCastReport report =
      cast_tensor(expected.name, float_view(source, expected.name, dequantized), target, options.allow_nonfinite, bytes);
  report.source_dtype = source_dtype;
  report.kept_fp32 = expected.role == TensorRole::layer_norm && options.precision != Precision::fp32;
  result.tensors.add_owned(expected.name, target, expected.shape, std::move(bytes));
  return report;
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
  refuse_nonfinite(report, allow_nonfinite);
  return report;
}

QuantizedWeight quantize_weight(const std::string& name, const TensorView& weight, bool allow_nonfinite) {
  if (!is_floating(weight.dtype)) throw Error("tensor " + name + " is not floating point");
  if (weight.shape.size() != 2) throw Error("cannot quantize tensor " + name + " of shape " + shape_string(weight.shape) +
                                            " per output channel: it is not a matrix");
  QuantizedWeight result;
  TensorCastReport& report = result.report;
  report.name = name;
  report.source_dtype = weight.dtype;
  report.target_dtype = DType::i8;
  report.numel = weight.numel();
  const int64_t rows = weight.shape[0], cols = weight.shape[1];
  const std::vector<float> values = weight.to_float();
  result.values.resize(values.size());
  result.scales.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = values.data() + r * cols;
    float largest = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      if (std::isnan(row[c])) ++report.nan_count;
      else if (std::isinf(row[c])) ++report.inf_count;
      else largest = std::max(largest, std::fabs(row[c]));
    }
    report.max_abs = std::max(report.max_abs, largest);
    float scale = largest / kInt8MaxLevel;
    if (!(scale > 0.0f)) scale = 1.0f;  // an all-zero row (or one so small its scale underflows): every level is 0
    result.scales[r] = scale;
    int8_t* levels = result.values.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      if (std::isnan(row[c])) {
        levels[c] = 0;
      } else if (std::isinf(row[c])) {
        levels[c] = static_cast<int8_t>(row[c] > 0 ? kInt8MaxLevel : -kInt8MaxLevel);
      } else {
        const float level = std::clamp(std::nearbyint(row[c] / scale), float(-kInt8MaxLevel), float(kInt8MaxLevel));
        levels[c] = static_cast<int8_t>(level);
        report.max_abs_error =
            std::max(report.max_abs_error, std::fabs(static_cast<double>(level) * scale - static_cast<double>(row[c])));
      }
    }
  }
  refuse_nonfinite(report, allow_nonfinite);
  return result;
}

FrozenModel cast_model(const FrozenModel& source, const CastOptions& options) {
  FrozenModel result;
  result.metadata = source.metadata;
  result.metadata.provenance.precision = options.precision;
  result.metadata.provenance.conversion_report.clear();

  std::vector<std::string> refused;
  const auto labels = static_cast<int64_t>(source.metadata.labels.size());
  for (const auto& expected : expected_bert_tensors(source.metadata.config, labels, options.precision)) {
    if (expected.role == TensorRole::weight_scale) continue;  // written beside its weight
    try {
      result.metadata.provenance.conversion_report.push_back(add_cast_tensor(source.tensors, expected, options, result));
    } catch (const Error& e) {
      refused.push_back(e.what());
    }
  }
  if (!refused.empty()) {
    std::string message = "conversion to " + std::string(precision_name(options.precision)) + " refused:";
    for (const auto& reason : refused) message += "\n  " + reason;
    throw Error(message);
  }
  return result;
}

std::string format_cast_report(const std::vector<TensorCastReport>& report) {
  int64_t values = 0, clamped = 0, underflowed = 0, nans = 0, infs = 0, kept = 0, quantized = 0;
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
    quantized += r.target_dtype == DType::i8 ? 1 : 0;
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
  if (quantized > 0) out << "; quantized to int8 " << quantized << " (per-row scales)";
  if (!worst_tensor.empty()) out << "; largest rounding error " << worst_error << " in " << worst_tensor;
  out << "\n" << lines.str();
  return out.str();
}

}  // namespace halfserve
