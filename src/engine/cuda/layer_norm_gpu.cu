// Embedding sum + LayerNorm and LayerNorm, one block per token row. The row is kept in shared memory between
// the passes; mean and variance are accumulated in double (two passes), so rows with a large offset and a small
// spread keep their variance, as on the CPU.
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_math.cuh"
#include "engine/cuda/kernels.h"

namespace halfserve::cuda {

namespace {

constexpr int kThreads = 256;
// Rows held in shared memory: the default 48 KiB less the static reduction scratch.
constexpr int64_t kMaxColumns = (48 * 1024 - 32 * sizeof(double)) / sizeof(float);

__device__ double block_sum(double value, double* scratch) {
  value = warp_sum(value);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // scratch may still be read from the previous reduction
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = threadIdx.x < blockDim.x / 32 ? scratch[threadIdx.x] : 0.0;
  if (warp == 0) value = warp_sum(value);
  if (threadIdx.x == 0) scratch[0] = value;
  __syncthreads();
  return scratch[0];
}

// Normalizes the row held in `row` and writes it to dst (f32) and dst_low (f16/bf16, optional).
__device__ void normalize_row(const float* row, int cols, const float* gamma, const float* beta, float eps, float* dst,
                              void* dst_low, DType low_dtype, size_t row_offset, double* scratch) {
  double sum = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c];
  const double mean = block_sum(sum, scratch) / cols;
  double squares = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const double centered = row[c] - mean;
    squares += centered * centered;
  }
  const double variance = block_sum(squares, scratch) / cols;
  const float inverse = static_cast<float>(1.0 / sqrt(variance + eps));
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    // Centred in double: a row far from zero (300 ± 0.01) would lose its spread to a float mean.
    const float value = static_cast<float>(row[c] - mean) * inverse * gamma[c] + beta[c];
    dst[row_offset + c] = value;
    if (dst_low != nullptr) store_from_float(dst_low, low_dtype, row_offset + c, value);
  }
}

__global__ void embed_layer_norm_kernel(const int32_t* ids, const int32_t* types, const int32_t* positions,
                                        const void* word, DType word_dtype, const void* position, DType position_dtype,
                                        const void* token_type, DType token_type_dtype, const float* gamma,
                                        const float* beta, float eps, int cols, float* dst, void* dst_low,
                                        DType low_dtype) {
  extern __shared__ float row[];
  __shared__ double scratch[32];
  const size_t token = blockIdx.x;
  const size_t word_row = static_cast<size_t>(ids[token]) * cols, position_row = static_cast<size_t>(positions[token]) * cols,
               type_row = static_cast<size_t>(types[token]) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    row[c] = load_as_float(word, word_dtype, word_row + c) + load_as_float(position, position_dtype, position_row + c) +
             load_as_float(token_type, token_type_dtype, type_row + c);
  __syncthreads();
  normalize_row(row, cols, gamma, beta, eps, dst, dst_low, low_dtype, token * cols, scratch);
}

__global__ void layer_norm_kernel(const float* src, const float* gamma, const float* beta, float eps, int cols, float* dst,
                                  void* dst_low, DType low_dtype) {
  extern __shared__ float row[];
  __shared__ double scratch[32];
  const size_t offset = static_cast<size_t>(blockIdx.x) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) row[c] = src[offset + c];
  __syncthreads();
  normalize_row(row, cols, gamma, beta, eps, dst, dst_low, low_dtype, offset, scratch);
}

void check_row_shape(const MatrixRef& dst, const MatrixRef* dst_low) {
  if (dst.dtype != DType::f32) throw Error("cuda layer norm: dst must be F32");
  if (dst.cols > kMaxColumns) throw Error("cuda layer norm: " + std::to_string(dst.cols) + " columns exceed the supported " +
                                          std::to_string(kMaxColumns));
  if (dst_low != nullptr && (dst_low->rows != dst.rows || dst_low->cols != dst.cols))
    throw Error("cuda layer norm: low-precision copy has a different shape");
}

}  // namespace

void launch_embed_layer_norm(const PackedTokens& tokens, const EmbeddingTables& tables, const LayerNormParams& norm,
                             const MatrixRef& dst, const MatrixRef* dst_low, cudaStream_t stream) {
  check_row_shape(dst, dst_low);
  if (tokens.tokens == 0) return;
  const int cols = static_cast<int>(dst.cols);
  embed_layer_norm_kernel<<<static_cast<unsigned>(tokens.tokens), kThreads, cols * sizeof(float), stream>>>(
      tokens.input_ids, tokens.token_type_ids, tokens.positions, tables.word.data, tables.word.dtype, tables.position.data,
      tables.position.dtype, tables.token_type.data, tables.token_type.dtype, norm.gamma, norm.beta, norm.eps, cols,
      static_cast<float*>(dst.data), dst_low ? dst_low->data : nullptr, dst_low ? dst_low->dtype : DType::f32);
  HALFSERVE_CUDA_CHECK(cudaGetLastError());
}

void launch_layer_norm(const float* src, const LayerNormParams& norm, const MatrixRef& dst, const MatrixRef* dst_low,
                       cudaStream_t stream) {
  check_row_shape(dst, dst_low);
  if (dst.rows == 0) return;
  const int cols = static_cast<int>(dst.cols);
  layer_norm_kernel<<<static_cast<unsigned>(dst.rows), kThreads, cols * sizeof(float), stream>>>(
      src, norm.gamma, norm.beta, norm.eps, cols, static_cast<float*>(dst.data), dst_low ? dst_low->data : nullptr,
      dst_low ? dst_low->dtype : DType::f32);
  HALFSERVE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace halfserve::cuda
