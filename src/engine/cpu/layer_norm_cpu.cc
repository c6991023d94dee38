#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"

namespace halfserve::cpu {

namespace {

// Normalises one row with statistics accumulated in double (two passes: mean, then variance of the centred
// values, which stays accurate where E[x²]−E[x]² or a float running sum would cancel), writing f32 and
// optionally a bf16 copy for the next GEMM. The row is a few KB, so the wider sums cost next to nothing.
// Built for AVX-512, AVX2 and baseline x86-64, chosen at load time: the binary stays portable and the loops
// (explicit SIMD reductions) run at full width where the CPU has it.
[[gnu::target_clones("avx512f", "avx2", "default")]]
void normalize_row(const float* src, int64_t cols, const LayerNormParams& norm, float* dst, uint16_t* dst_low) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < cols; ++c) sum += src[c];
  const double mean = sum / static_cast<double>(cols);
  double square_sum = 0.0;
#pragma omp simd reduction(+ : square_sum)
  for (int64_t c = 0; c < cols; ++c) {
    const double centred = src[c] - mean;
    square_sum += centred * centred;
  }
  const float inverse_std = static_cast<float>(1.0 / std::sqrt(square_sum / static_cast<double>(cols) + norm.eps));
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c)
    dst[c] = static_cast<float>(src[c] - mean) * inverse_std * norm.gamma[c] + norm.beta[c];
  if (dst_low != nullptr) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) dst_low[c] = float_to_bfloat16(dst[c]);
  }
}

void check_low(const MatrixRef& dst, const MatrixRef* dst_low) {
  if (dst.dtype != DType::f32) throw Error("layer norm writes f32");
  if (dst_low != nullptr && (dst_low->dtype != DType::bf16 || dst_low->rows != dst.rows || dst_low->cols != dst.cols))
    throw Error("layer norm's low-precision copy must be bf16 of the same shape");
}

// fp16 rows widened 16 at a time by the CPU's own conversion (exact, subnormals included): the portable scalar
// conversion's branches made the fp16 embedding gather the largest non-GEMM cost of int8 runs (4.7 %).
[[gnu::target("avx512f")]]
void add_half_row_avx512(const uint16_t* values, int64_t cols, float* acc) {
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    const __m512 widened = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + c)));
    _mm512_storeu_ps(acc + c, _mm512_add_ps(_mm512_loadu_ps(acc + c), widened));
  }
  for (; c < cols; ++c) acc[c] += half_to_float(values[c]);
}

const bool cpu_has_avx512f = __builtin_cpu_supports("avx512f");

// Adds row `row` of `table` (any float dtype, or I8 with per-row `scales`) to `acc`.
[[gnu::target_clones("avx512f", "avx2", "default")]]
void accumulate_row(const DeviceTensor& table, const DeviceTensor& scales, int64_t row, int64_t cols, float* acc) {
  const int64_t offset = row * cols;
  switch (table.dtype) {
    case DType::i8: {
      const int8_t* levels = static_cast<const int8_t*>(table.data) + offset;
      const float scale = static_cast<const float*>(scales.data)[row];
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) acc[c] += static_cast<float>(levels[c]) * scale;
      break;
    }
    case DType::f32: {
      const float* values = static_cast<const float*>(table.data) + offset;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) acc[c] += values[c];
      break;
    }
    case DType::f16: {
      const uint16_t* values = static_cast<const uint16_t*>(table.data) + offset;
      if (cpu_has_avx512f) {
        add_half_row_avx512(values, cols, acc);
        break;
      }
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) acc[c] += half_to_float(values[c]);
      break;
    }
    case DType::bf16: {
      const uint16_t* values = static_cast<const uint16_t*>(table.data) + offset;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) acc[c] += bfloat16_to_float(values[c]);
      break;
    }
    default:
      throw Error("embedding table of dtype " + std::string(dtype_name(table.dtype)));
  }
}

}  // namespace

void CpuBackend::layer_norm(const float* src, const LayerNormParams& norm, const MatrixRef& dst, const MatrixRef* dst_low) {
  check_low(dst, dst_low);
  const int64_t cols = dst.cols;
  auto* out = static_cast<float*>(dst.data);
  auto* out_low = dst_low != nullptr ? static_cast<uint16_t*>(dst_low->data) : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < dst.rows; ++r)
    normalize_row(src + r * cols, cols, norm, out + r * cols, out_low != nullptr ? out_low + r * cols : nullptr);
}

void CpuBackend::embed_layer_norm(const PackedTokens& tokens, const EmbeddingTables& tables, const LayerNormParams& norm,
                                  const MatrixRef& dst, const MatrixRef* dst_low) {
  check_low(dst, dst_low);
  const int64_t cols = dst.cols;
  const int64_t rows = tokens.tokens;
  if (rows != dst.rows) throw Error("embedding output rows do not match the tokens");
  if (tables.word.dtype == DType::i8 && tables.word_scales.data == nullptr) throw Error("I8 word embeddings without scales");
  auto* out = static_cast<float*>(dst.data);
  auto* out_low = dst_low != nullptr ? static_cast<uint16_t*>(dst_low->data) : nullptr;
#pragma omp parallel
  {
    std::vector<float> sum(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      std::fill(sum.begin(), sum.end(), 0.0f);
      accumulate_row(tables.word, tables.word_scales, tokens.input_ids[r], cols, sum.data());
      accumulate_row(tables.position, {}, tokens.positions[r], cols, sum.data());
      accumulate_row(tables.token_type, {}, tokens.token_type_ids[r], cols, sum.data());
      normalize_row(sum.data(), cols, norm, out + r * cols, out_low != nullptr ? out_low + r * cols : nullptr);
    }
  }
}

}  // namespace halfserve::cpu
