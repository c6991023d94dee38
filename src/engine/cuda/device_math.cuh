#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "halfserve/format/dtype.h"

// Loads and stores between the activation types and fp32, which every kernel computes in.
namespace halfserve::cuda {

__device__ __forceinline__ float to_float(float value) { return value; }
__device__ __forceinline__ float to_float(__half value) { return __half2float(value); }
__device__ __forceinline__ float to_float(__nv_bfloat16 value) { return __bfloat162float(value); }

template <typename T>
__device__ __forceinline__ T from_float(float value);
template <>
__device__ __forceinline__ float from_float<float>(float value) { return value; }
template <>
__device__ __forceinline__ __half from_float<__half>(float value) { return __float2half_rn(value); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float value) { return __float2bfloat16_rn(value); }

// Element `index` of a table whose type is only known at run time (embedding tables keep the file's type).
__device__ __forceinline__ float load_as_float(const void* data, DType dtype, size_t index) {
  switch (dtype) {
    case DType::f16: return __half2float(static_cast<const __half*>(data)[index]);
    case DType::bf16: return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[index]);
    default: return static_cast<const float*>(data)[index];
  }
}

__device__ __forceinline__ void store_from_float(void* data, DType dtype, size_t index, float value) {
  switch (dtype) {
    case DType::f16: static_cast<__half*>(data)[index] = __float2half_rn(value); break;
    case DType::bf16: static_cast<__nv_bfloat16*>(data)[index] = __float2bfloat16_rn(value); break;
    default: static_cast<float*>(data)[index] = value;
  }
}

__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ double warp_sum(double value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ float warp_max(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

}  // namespace halfserve::cuda
