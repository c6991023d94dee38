#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "engine/cpu/cpu_backend.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"

namespace halfserve::cpu {

namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// Row count used to let oneDNN pick the packed weight layout; the layout it picks does not depend on it.
constexpr int64_t kLayoutProbeRows = 256;
// Distinct row counts whose primitives are kept; beyond that oneDNN's own primitive cache still helps.
constexpr size_t kMaxCachedShapes = 256;

dnnl::algorithm gelu_algorithm(Activation activation) {
  return activation == Activation::gelu_tanh ? dnnl::algorithm::eltwise_gelu_tanh : dnnl::algorithm::eltwise_gelu_erf;
}

void check_shapes(const TensorView& weight, const TensorView& bias, const LinearSpec& spec) {
  const int64_t n = spec.out_features, k = spec.in_features;
  if (weight.shape != Shape{n, k})
    throw Error("linear weight has shape " + shape_string(weight.shape) + ", expected " + shape_string({n, k}));
  if (bias.shape != Shape{n}) throw Error("linear bias has shape " + shape_string(bias.shape));
}

// A linear's matmul primitives, one per row count, created on first use.
class PrimitivesByRows {
 public:
  using Describe = std::function<dnnl::matmul::primitive_desc(int64_t rows)>;

  // Returned by value: the handle is reference-counted, so a cache reset cannot pull it from under a caller.
  dnnl::matmul get(int64_t rows, const Describe& describe) const {
    std::lock_guard lock(mutex_);
    auto it = primitives_.find(rows);
    if (it != primitives_.end()) return it->second;
    if (primitives_.size() >= kMaxCachedShapes) primitives_.clear();
    return primitives_.emplace(rows, dnnl::matmul(describe(rows))).first->second;
  }

 private:
  mutable std::mutex mutex_;
  mutable std::unordered_map<int64_t, dnnl::matmul> primitives_;
};

class CpuLinear final : public LinearWeights {
 public:
  CpuLinear(const TensorView& weight, const TensorView& bias, const LinearSpec& spec) : LinearWeights(spec) {
    check_shapes(weight, bias, spec);
    const int64_t n = spec.out_features, k = spec.in_features;
    auto& engine = cpu_engine();
    const auto weights_type = dnnl_type(spec.compute_dtype);

    // The file's [out, in] matrix is oneDNN's {in, out} weights in `ba` order; reorder once into the layout
    // the GEMM kernels want.
    const std::vector<float> values = weight.to_float();
    dnnl::memory plain({{k, n}, weights_type, tag::ba}, engine);
    if (spec.compute_dtype == DType::bf16) {
      auto* out = static_cast<uint16_t*>(plain.get_data_handle());
      for (size_t i = 0; i < values.size(); ++i) out[i] = float_to_bfloat16(values[i]);
    } else {
      std::memcpy(plain.get_data_handle(), values.data(), values.size() * sizeof(float));
    }
    weights_desc_ = describe(kLayoutProbeRows, /*packed=*/false).weights_desc();
    packed_ = dnnl::memory(weights_desc_, engine);
    dnnl::reorder(plain, packed_).execute(thread_stream(), plain, packed_);

    bias_ = dnnl::memory({{1, n}, dt::f32, tag::ab}, engine);
    const std::vector<float> bias_values = bias.to_float();
    std::memcpy(bias_.get_data_handle(), bias_values.data(), bias_values.size() * sizeof(float));
    thread_stream().wait();
  }

  void run(const MatrixRef& src, const MatrixRef& dst, const float* residual) const {
    const LinearSpec& s = spec();
    if (src.cols != s.in_features || dst.cols != s.out_features || src.rows != dst.rows ||
        src.dtype != s.compute_dtype || dst.dtype != s.dst_dtype || (residual != nullptr) != s.add_residual)
      throw Error("linear called with operands that do not match its spec");
    if (src.rows == 0) return;
    auto& engine = cpu_engine();
    const int64_t m = src.rows;
    dnnl::memory src_memory({{m, s.in_features}, dnnl_type(src.dtype), tag::ab}, engine, src.data);
    dnnl::memory dst_memory({{m, s.out_features}, dnnl_type(dst.dtype), tag::ab}, engine, dst.data);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, src_memory}, {DNNL_ARG_WEIGHTS, packed_}, {DNNL_ARG_BIAS, bias_}, {DNNL_ARG_DST, dst_memory}};
    if (residual != nullptr) {
      const int index = s.activation ? 1 : 0;
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1] =
          dnnl::memory({{m, s.out_features}, dt::f32, tag::ab}, engine, const_cast<float*>(residual));
    }
    primitives_.get(m, [this](int64_t rows) { return describe(rows, /*packed=*/true); }).execute(thread_stream(), args);
    thread_stream().wait();
  }

 private:
  dnnl::matmul::primitive_desc describe(int64_t rows, bool packed) const {
    const LinearSpec& s = spec();
    const auto weights_type = dnnl_type(s.compute_dtype);
    dnnl::post_ops post_ops;
    if (s.activation) post_ops.append_eltwise(1.0f, gelu_algorithm(*s.activation), 0.0f, 0.0f);
    if (s.add_residual)
      post_ops.append_binary(dnnl::algorithm::binary_add, {{rows, s.out_features}, dt::f32, tag::ab});
    dnnl::primitive_attr attr;
    attr.set_post_ops(post_ops);
    const dnnl::memory::desc weights = packed ? weights_desc_
                                              : dnnl::memory::desc({s.in_features, s.out_features}, weights_type, tag::any);
    const dnnl::matmul::desc desc({{rows, s.in_features}, weights_type, tag::ab}, weights,
                                  {{1, s.out_features}, dt::f32, tag::ab},
                                  {{rows, s.out_features}, dnnl_type(s.dst_dtype), tag::ab});
    return dnnl::matmul::primitive_desc(desc, attr, cpu_engine());
  }

  dnnl::memory::desc weights_desc_;
  dnnl::memory packed_;
  dnnl::memory bias_;
  PrimitivesByRows primitives_;
};

// ---------------------------------------------------------------------------------------------------------------
// int8: I8 weights with per-output-channel scales, f32 activations quantized per row on every call.

// Symmetric, so -128 is never produced and a row's levels and their negation are both representable.
constexpr float kInt8MaxLevel = 127.0f;
// Below this many elements a row-parallel OpenMP region costs more than it saves.
constexpr int64_t kParallelQuantizeElements = 1 << 14;

// A row's scale (its dequantization factor) and the factor that maps it onto the levels.
struct RowScale {
  float scale;
  float inverse;
};

// scale = max|x| / 127. A zero row (or one so small that 127 / max|x| overflows) gets scale 1 and inverse 0, so
// all its levels are 0.
RowScale row_scale(float max_abs) {
  const float inverse = kInt8MaxLevel / max_abs;
  if (!(max_abs > 0.0f) || !std::isfinite(inverse)) return {1.0f, 0.0f};
  return {max_abs / kInt8MaxLevel, inverse};
}

// level = round-to-nearest-even(x * inverse), clamped to ±127; returns the row's scale. The AVX-512 version below
// computes exactly the same levels (cvtps2dq rounds to nearest even, like nearbyint in the default mode).
float quantize_row_portable(const float* src, int64_t cols, int8_t* dst) {
  float max_abs = 0.0f;
  for (int64_t c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(src[c]));
  const RowScale s = row_scale(max_abs);
  for (int64_t c = 0; c < cols; ++c)
    dst[c] = static_cast<int8_t>(std::clamp(std::nearbyint(src[c] * s.inverse), -kInt8MaxLevel, kInt8MaxLevel));
  return s.scale;
}

// The project builds for baseline x86-64, where the compiler leaves these loops scalar; quantizing is a full
// pass over every GEMM input, so on AVX-512 CPUs it gets its own 16-lane version, picked at run time.
#define HALFSERVE_AVX512 __attribute__((target("avx512f,avx512bw")))

// 16 levels as bytes: values × inverse rounded to nearest even (the default MXCSR mode) and clamped to ±127.
HALFSERVE_AVX512 inline void store_levels(__m512 values, __m512 inverse, __mmask16 lanes, int8_t* dst) {
  const __m512i levels = _mm512_cvtps_epi32(_mm512_mul_ps(values, inverse));
  const __m512i clamped = _mm512_min_epi32(_mm512_max_epi32(levels, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
  _mm512_mask_cvtsepi32_storeu_epi8(dst, lanes, clamped);
}

HALFSERVE_AVX512 float quantize_row_avx512(const float* src, int64_t cols, int8_t* dst) {
  const int64_t full = cols / 16 * 16;
  const __mmask16 all = 0xffff, tail = static_cast<__mmask16>((1u << (cols - full)) - 1u);
  __m512 largest = _mm512_setzero_ps();
  for (int64_t c = 0; c < full; c += 16) largest = _mm512_max_ps(largest, _mm512_abs_ps(_mm512_loadu_ps(src + c)));
  if (tail != 0) largest = _mm512_max_ps(largest, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, src + full)));
  alignas(64) float lanes[16];  // reduced by hand: GCC 12's _mm512_reduce_max_ps trips -Wuninitialized
  _mm512_store_ps(lanes, largest);
  const RowScale s = row_scale(*std::max_element(lanes, lanes + 16));

  const __m512 inverse = _mm512_set1_ps(s.inverse);
  for (int64_t c = 0; c < full; c += 16) store_levels(_mm512_loadu_ps(src + c), inverse, all, dst + c);
  if (tail != 0) store_levels(_mm512_maskz_loadu_ps(tail, src + full), inverse, tail, dst + full);
  return s.scale;
}
#undef HALFSERVE_AVX512

// A calling thread's quantized GEMM input, grown to the largest call and reused (one per thread, as each
// caller of a shared BertModel runs its own GEMMs).
struct QuantizedRows {
  std::vector<int8_t> levels;
  std::vector<float> scales;
};

QuantizedRows& thread_quantized_rows(int64_t rows, int64_t cols) {
  thread_local QuantizedRows buffer;
  if (buffer.levels.size() < static_cast<size_t>(rows * cols)) buffer.levels.resize(static_cast<size_t>(rows * cols));
  if (buffer.scales.size() < static_cast<size_t>(rows)) buffer.scales.resize(static_cast<size_t>(rows));
  return buffer;
}

void quantize_rows(const float* src, int64_t rows, int64_t cols, QuantizedRows& out) {
  static const bool avx512 = __builtin_cpu_supports("avx512bw");
  const auto quantize_row = avx512 ? quantize_row_avx512 : quantize_row_portable;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelQuantizeElements)
  for (int64_t r = 0; r < rows; ++r) out.scales[r] = quantize_row(src + r * cols, cols, out.levels.data() + r * cols);
}

// dst = act(rowscale[m] · wscale[n] · Σ_k q_src[m][k]·q_w[n][k] + bias[n]) [+ residual]: one s8 × s8 GEMM with
// an f32 result and every scale, the bias, GELU and the residual fused in as oneDNN post-ops.
//
// Two choices keep oneDNN 2.6 on its brgemm VNNI kernels (checked with ONEDNN_VERBOSE=1: brg:avx512_core_vnni):
// - The weight scales are fixed at load, so they go in as constant output scales: with runtime output scales
//   oneDNN 2.6 falls back to its gemm:jit int8 path, ~20 % slower here.
// - The per-row activation scales are an {M, 1} binary post-op, which brgemm rejects for a 2D matmul (ref_int8,
//   three orders of magnitude slower); described as one batch of a 3D matmul {1, M, K} x {1, K, N}, the same
//   operand is a broadcast over dimension 1, which it accepts.
class CpuInt8Linear final : public LinearWeights {
 public:
  CpuInt8Linear(const TensorView& weight, const TensorView& bias, const TensorView& weight_scales, const LinearSpec& spec)
      : LinearWeights(spec) {
    check_shapes(weight, bias, spec);
    const int64_t n = spec.out_features, k = spec.in_features;
    if (weight.dtype != DType::i8)
      throw Error("int8 linear needs I8 weights, got " + std::string(dtype_name(weight.dtype)));
    if (weight_scales.shape != Shape{n})
      throw Error("int8 weight scales have shape " + shape_string(weight_scales.shape) + ", expected " + shape_string({n}));
    output_scales_ = weight_scales.to_float();
    for (const float scale : output_scales_)
      if (!std::isfinite(scale)) throw Error("int8 weight scales hold a non-finite value");

    auto& engine = cpu_engine();
    // The file's [out, in] I8 matrix is the {1, in, out} weights in `acb` order. oneDNN's packed s8 layout also
    // carries the compensation for s8 sources (VNNI multiplies u8 by s8), which the reorder computes.
    dnnl::memory plain({{1, k, n}, dt::s8, tag::acb}, engine, const_cast<std::byte*>(weight.data.data()));
    weights_desc_ = describe(kLayoutProbeRows, /*packed=*/false).weights_desc();
    packed_ = dnnl::memory(weights_desc_, engine);
    dnnl::reorder(plain, packed_).execute(thread_stream(), plain, packed_);

    bias_ = dnnl::memory({{1, 1, n}, dt::f32, tag::abc}, engine);
    const std::vector<float> bias_values = bias.to_float();
    std::memcpy(bias_.get_data_handle(), bias_values.data(), bias_values.size() * sizeof(float));
    thread_stream().wait();
  }

  void run(const MatrixRef& src, const MatrixRef& dst, const float* residual) const {
    const LinearSpec& s = spec();
    if (src.cols != s.in_features || dst.cols != s.out_features || src.rows != dst.rows || src.dtype != DType::f32 ||
        dst.dtype != DType::f32 || (residual != nullptr) != s.add_residual)
      throw Error("int8 linear called with operands that do not match its spec (it reads and writes f32)");
    if (src.rows == 0) return;
    const int64_t m = src.rows, k = s.in_features, n = s.out_features;
    QuantizedRows& quantized = thread_quantized_rows(m, k);
    quantize_rows(static_cast<const float*>(src.data), m, k, quantized);

    auto& engine = cpu_engine();
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, dnnl::memory({{1, m, k}, dt::s8, tag::abc}, engine, quantized.levels.data())},
        {DNNL_ARG_WEIGHTS, packed_},
        {DNNL_ARG_DST, dnnl::memory({{1, m, n}, dt::f32, tag::abc}, engine, dst.data)},
        {DNNL_ARG_ATTR_MULTIPLE_POST_OP(kRowScalePostOp) | DNNL_ARG_SRC_1,
         dnnl::memory({{1, m, 1}, dt::f32, tag::abc}, engine, quantized.scales.data())},
        {DNNL_ARG_ATTR_MULTIPLE_POST_OP(kBiasPostOp) | DNNL_ARG_SRC_1, bias_}};
    if (residual != nullptr)
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(residual_post_op()) | DNNL_ARG_SRC_1] =
          dnnl::memory({{1, m, n}, dt::f32, tag::abc}, engine, const_cast<float*>(residual));
    primitives_.get(m, [this](int64_t rows) { return describe(rows, /*packed=*/true); }).execute(thread_stream(), args);
    thread_stream().wait();
  }

 private:
  // Post-op order: the row scales must scale the raw products before the bias is added.
  static constexpr int kRowScalePostOp = 0, kBiasPostOp = 1;
  int residual_post_op() const { return spec().activation ? 3 : 2; }

  dnnl::matmul::primitive_desc describe(int64_t rows, bool packed) const {
    const LinearSpec& s = spec();
    const int64_t k = s.in_features, n = s.out_features;
    dnnl::post_ops post_ops;
    post_ops.append_binary(dnnl::algorithm::binary_mul, {{1, rows, 1}, dt::f32, tag::abc});
    post_ops.append_binary(dnnl::algorithm::binary_add, {{1, 1, n}, dt::f32, tag::abc});
    if (s.activation) post_ops.append_eltwise(1.0f, gelu_algorithm(*s.activation), 0.0f, 0.0f);
    if (s.add_residual) post_ops.append_binary(dnnl::algorithm::binary_add, {{1, rows, n}, dt::f32, tag::abc});
    dnnl::primitive_attr attr;
    attr.set_output_scales(1 << 2, output_scales_);  // one per output column (dimension 2 of {1, M, N})
    attr.set_post_ops(post_ops);
    const dnnl::memory::desc weights = packed ? weights_desc_ : dnnl::memory::desc({1, k, n}, dt::s8, tag::any);
    const dnnl::matmul::desc desc({{1, rows, k}, dt::s8, tag::abc}, weights, {{1, rows, n}, dt::f32, tag::abc});
    return dnnl::matmul::primitive_desc(desc, attr, cpu_engine());
  }

  std::vector<float> output_scales_;
  dnnl::memory::desc weights_desc_;
  dnnl::memory packed_;
  dnnl::memory bias_;
  PrimitivesByRows primitives_;
};

// int8 on CPUs without VNNI (AVX2-only, AVX-512 before Cascade Lake): oneDNN's int8 kernels there multiply u8 by
// s8 pairwise into saturating 16-bit sums (vpmaddubsw), and the s8 activations it shifts to u8 overflow them —
// outputs off by up to 20 % of their size, seen on an AVX2 EPYC. Instead the same numbers are computed in f32:
// the I8 weights dequantized once at load (level × channel scale), each row quantized to levels exactly as the
// VNNI path does and dequantized (level × row scale), then one f32 GEMM with the same fused bias, GELU and
// residual. The answer is the VNNI path's up to f32 rounding, at f32 speed.
class CpuInt8AsF32Linear final : public LinearWeights {
 public:
  CpuInt8AsF32Linear(const TensorView& weight, const TensorView& bias, const TensorView& weight_scales, const LinearSpec& spec)
      : LinearWeights(spec),
        dequantized_(dequantize(weight, weight_scales, spec)),
        f32_(TensorView{DType::f32, weight.shape, std::as_bytes(std::span(dequantized_))}, bias, f32_spec(spec)) {
    std::vector<float>().swap(dequantized_);  // CpuLinear has packed its own copy
  }

  void run(const MatrixRef& src, const MatrixRef& dst, const float* residual) const {
    const LinearSpec& s = spec();
    if (src.cols != s.in_features || src.dtype != DType::f32 || dst.dtype != DType::f32)
      throw Error("int8 linear called with operands that do not match its spec (it reads and writes f32)");
    if (src.rows == 0) return;
    const int64_t m = src.rows, k = s.in_features;
    QuantizedRows& quantized = thread_quantized_rows(m, k);
    quantize_rows(static_cast<const float*>(src.data), m, k, quantized);
    thread_local std::vector<float> rows;
    if (rows.size() < static_cast<size_t>(m * k)) rows.resize(static_cast<size_t>(m * k));
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < k; ++c) rows[r * k + c] = quantized.levels[r * k + c] * quantized.scales[r];
    f32_.run(MatrixRef{rows.data(), DType::f32, m, k}, dst, residual);
  }

 private:
  static LinearSpec f32_spec(LinearSpec spec) {
    spec.compute_dtype = DType::f32;
    return spec;
  }
  static std::vector<float> dequantize(const TensorView& weight, const TensorView& weight_scales, const LinearSpec& spec) {
    const int64_t n = spec.out_features, k = spec.in_features;
    if (weight.dtype != DType::i8) throw Error("int8 linear needs I8 weights, got " + std::string(dtype_name(weight.dtype)));
    if (weight.shape != Shape{n, k})
      throw Error("linear weight has shape " + shape_string(weight.shape) + ", expected " + shape_string({n, k}));
    if (weight_scales.shape != Shape{n})
      throw Error("int8 weight scales have shape " + shape_string(weight_scales.shape) + ", expected " + shape_string({n}));
    const std::vector<float> scales = weight_scales.to_float();
    const auto* levels = reinterpret_cast<const int8_t*>(weight.data.data());
    std::vector<float> values(static_cast<size_t>(n * k));
    for (int64_t row = 0; row < n; ++row) {
      if (!std::isfinite(scales[row])) throw Error("int8 weight scales hold a non-finite value");
      for (int64_t c = 0; c < k; ++c) values[row * k + c] = levels[row * k + c] * scales[row];
    }
    return values;
  }

  std::vector<float> dequantized_;
  CpuLinear f32_;
};

}  // namespace

bool has_int8_dot_product() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto vnni = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_vnni);
  return (isa & vnni) == vnni;
}

std::unique_ptr<LinearWeights> CpuBackend::prepare_linear(const TensorView& weight, const TensorView& bias,
                                                          const LinearSpec& spec, const TensorView* weight_scales) {
  if (spec.compute_dtype == DType::i8) {
    if (weight_scales == nullptr) throw Error("int8 linear needs the weight's per-output-channel scales");
    if (spec.dst_dtype != DType::f32)
      throw Error("int8 linear writes F32 (its result carries the activation and weight scales), not " +
                  std::string(dtype_name(spec.dst_dtype)));
    if (!has_int8_dot_product()) return std::make_unique<CpuInt8AsF32Linear>(weight, bias, *weight_scales, spec);
    return std::make_unique<CpuInt8Linear>(weight, bias, *weight_scales, spec);
  }
  if (weight_scales != nullptr) throw Error("weight scales given for a " + std::string(dtype_name(spec.compute_dtype)) + " linear");
  if (spec.compute_dtype != DType::f32 && spec.compute_dtype != DType::bf16)
    throw Error("cpu backend computes GEMMs in F32, BF16 or I8, not " + std::string(dtype_name(spec.compute_dtype)));
  return std::make_unique<CpuLinear>(weight, bias, spec);
}

void CpuBackend::linear(const LinearWeights& weights, const MatrixRef& src, const MatrixRef& dst, const float* residual) {
  if (weights.spec().compute_dtype != DType::i8) static_cast<const CpuLinear&>(weights).run(src, dst, residual);
  else if (has_int8_dot_product()) static_cast<const CpuInt8Linear&>(weights).run(src, dst, residual);
  else static_cast<const CpuInt8AsF32Linear&>(weights).run(src, dst, residual);
}

}  // namespace halfserve::cpu
