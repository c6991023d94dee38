// Fused attention over packed sequences: one block per (query tile, head, sequence) reads its queries once,
// streams the sequence's keys and values through shared memory in tiles, and keeps a running (online) softmax,
// so the [length, length] score matrix never reaches device memory and padding never exists. Scores, the mask
// (-10000 for masked keys, added in fp32 so fp16 never overflows) and the softmax are fp32.
#include <cmath>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_math.cuh"
#include "engine/cuda/kernels.h"

namespace halfserve::cuda {

namespace {

constexpr int kQueries = 32;  // query rows per block
constexpr int kKeys = 32;     // keys per tile: one per lane
constexpr int kWarps = 8;
constexpr int kRowsPerWarp = kQueries / kWarps;
constexpr int kMaxHeadSize = 128;
constexpr unsigned kFullMask = 0xffffffffu;
// Grid: x = sequence (up to 2^31 - 1 of them), y = head, z = query tile.

size_t shared_bytes(int head_size) {
  return sizeof(float) * (static_cast<size_t>(kQueries) * head_size + static_cast<size_t>(kKeys) * (head_size + 1) +
                          static_cast<size_t>(kKeys) * head_size);
}

// kLaneDims: head dimensions each lane accumulates (head_size <= 32 * kLaneDims).
template <typename T, int kLaneDims>
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(const T* qkv, const int32_t* offsets, const int32_t* key_mask,
                                                                int heads, int head_size, float scale, T* context) {
  extern __shared__ float shared[];
  const int d_size = head_size;
  float* q_tile = shared;                              // [kQueries][d], pre-scaled
  float* k_tile = q_tile + kQueries * d_size;          // [kKeys][d + 1]: the odd stride keeps lanes on distinct banks
  float* v_tile = k_tile + kKeys * (d_size + 1);       // [kKeys][d]

  const int sequence = blockIdx.x, head = blockIdx.y;
  const int begin = offsets[sequence], length = offsets[sequence + 1] - begin;
  const int first_query = blockIdx.z * kQueries;
  if (first_query >= length) return;  // the whole block leaves together
  const int queries = min(kQueries, length - first_query);
  const int hidden = heads * d_size;
  const size_t row_stride = 3 * static_cast<size_t>(hidden);
  const size_t head_column = static_cast<size_t>(head) * d_size;

  for (int i = threadIdx.x; i < kQueries * d_size; i += blockDim.x) {
    const int r = i / d_size, d = i % d_size;
    q_tile[i] = r < queries ? to_float(qkv[static_cast<size_t>(begin + first_query + r) * row_stride + head_column + d]) * scale : 0.0f;
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float row_max[kRowsPerWarp], row_sum[kRowsPerWarp], accumulator[kRowsPerWarp][kLaneDims];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < kLaneDims; ++c) accumulator[r][c] = 0.0f;
  }

  for (int first_key = 0; first_key < length; first_key += kKeys) {
    const int keys = min(kKeys, length - first_key);
    __syncthreads();  // the previous tile has been used (and the queries are loaded)
    for (int i = threadIdx.x; i < kKeys * d_size; i += blockDim.x) {
      const int r = i / d_size, d = i % d_size;
      float key = 0.0f, value = 0.0f;
      if (r < keys) {
        const size_t base = static_cast<size_t>(begin + first_key + r) * row_stride + head_column + d;
        key = to_float(qkv[base + hidden]);
        value = to_float(qkv[base + 2 * static_cast<size_t>(hidden)]);
      }
      k_tile[r * (d_size + 1) + d] = key;
      v_tile[r * d_size + d] = value;
    }
    __syncthreads();

    const bool real_key = lane < keys;
    const float key_bias = real_key && key_mask != nullptr && key_mask[begin + first_key + lane] == 0 ? -10000.0f : 0.0f;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const float* q = q_tile + (warp * kRowsPerWarp + rr) * d_size;
      const float* k = k_tile + lane * (d_size + 1);
      float score = -INFINITY;
      if (real_key) {
        float dot = 0.0f;
        for (int d = 0; d < d_size; ++d) dot = fmaf(q[d], k[d], dot);
        score = dot + key_bias;
      }
      // Every tile holds at least one real key, so the tile maximum is finite and exp() below never sees inf - inf.
      const float new_max = fmaxf(row_max[rr], warp_max(score));
      const float weight = real_key ? expf(score - new_max) : 0.0f;
      const float correction = expf(row_max[rr] - new_max);
      row_sum[rr] = row_sum[rr] * correction + warp_sum(weight);
      row_max[rr] = new_max;
#pragma unroll
      for (int c = 0; c < kLaneDims; ++c) accumulator[rr][c] *= correction;
      for (int j = 0; j < keys; ++j) {
        const float weight_j = __shfl_sync(kFullMask, weight, j);
#pragma unroll
        for (int c = 0; c < kLaneDims; ++c) {
          const int d = lane + 32 * c;
          if (d < d_size) accumulator[rr][c] = fmaf(weight_j, v_tile[j * d_size + d], accumulator[rr][c]);
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr;
    if (r >= queries) continue;
    const float inverse = 1.0f / row_sum[rr];
    T* out = context + static_cast<size_t>(begin + first_query + r) * hidden + head_column;
#pragma unroll
    for (int c = 0; c < kLaneDims; ++c) {
      const int d = lane + 32 * c;
      if (d < d_size) out[d] = from_float<T>(accumulator[rr][c] * inverse);
    }
  }
}

template <typename T, int kLaneDims>
void launch_typed(const AttentionArgs& args, const int32_t* offsets, int sequences, int longest, cudaStream_t stream) {
  const size_t shared = shared_bytes(static_cast<int>(args.head_size));
  // Larger head sizes need more than the default 48 KiB of shared memory; the attribute is per kernel.
  static const bool opted_in = [] {
    const bool ok = cudaFuncSetAttribute(attention_kernel<T, kLaneDims>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(shared_bytes(32 * kLaneDims))) == cudaSuccess;
    cudaGetLastError();  // a refusal must not be reported later as a launch failure
    return ok;
  }();
  if (!opted_in && shared > 48 * 1024) throw Error("cuda attention: this GPU cannot give " + std::to_string(shared) + " bytes of shared memory");
  const dim3 grid(static_cast<unsigned>(sequences), static_cast<unsigned>(args.num_heads),
                  static_cast<unsigned>((longest + kQueries - 1) / kQueries));
  const float scale = 1.0f / std::sqrt(static_cast<float>(args.head_size));
  attention_kernel<T, kLaneDims><<<grid, kWarps * 32, shared, stream>>>(
      static_cast<const T*>(args.qkv), offsets, args.key_mask, static_cast<int>(args.num_heads), static_cast<int>(args.head_size),
      scale, static_cast<T*>(args.context.data));
  HALFSERVE_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void launch_for_head_size(const AttentionArgs& args, const int32_t* offsets, int sequences, int longest, cudaStream_t stream) {
  if (args.head_size <= 32) return launch_typed<T, 1>(args, offsets, sequences, longest, stream);
  if (args.head_size <= 64) return launch_typed<T, 2>(args, offsets, sequences, longest, stream);
  if (args.head_size <= 96) return launch_typed<T, 3>(args, offsets, sequences, longest, stream);
  return launch_typed<T, 4>(args, offsets, sequences, longest, stream);
}

}  // namespace

void launch_attention(const AttentionArgs& args, const int32_t* offsets, int sequences, int longest, cudaStream_t stream) {
  if (args.head_size < 1 || args.head_size > kMaxHeadSize)
    throw Error("cuda attention: head size " + std::to_string(args.head_size) + " is not supported (1.." +
                std::to_string(kMaxHeadSize) + ")");
  if (args.context.dtype != args.qkv_dtype) throw Error("cuda attention: context and qkv types differ");
  if (sequences == 0 || longest == 0) return;
  switch (args.qkv_dtype) {
    case DType::f32: return launch_for_head_size<float>(args, offsets, sequences, longest, stream);
    case DType::f16: return launch_for_head_size<__half>(args, offsets, sequences, longest, stream);
    case DType::bf16: return launch_for_head_size<__nv_bfloat16>(args, offsets, sequences, longest, stream);
    default: throw Error("cuda attention: unsupported dtype " + std::string(dtype_name(args.qkv_dtype)));
  }
}

}  // namespace halfserve::cuda
