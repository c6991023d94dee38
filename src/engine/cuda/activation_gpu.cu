// GELU after a GEMM whose epilogue added the bias (cuBLASLt's own GELU epilogue is the tanh form only).
#include <algorithm>
#include <cmath>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_math.cuh"
#include "engine/cuda/kernels.h"

namespace halfserve::cuda {

namespace {

template <typename T, bool kTanh>
__global__ void gelu_kernel(T* data, size_t count) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = to_float(data[i]);
    float y;
    if constexpr (kTanh) {
      y = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    } else {
      y = 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    }
    data[i] = from_float<T>(y);
  }
}

template <typename T>
void launch_typed(void* data, size_t count, bool tanh_form, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((count + kThreads - 1) / kThreads, 65535));
  if (tanh_form)
    gelu_kernel<T, true><<<blocks, kThreads, 0, stream>>>(static_cast<T*>(data), count);
  else
    gelu_kernel<T, false><<<blocks, kThreads, 0, stream>>>(static_cast<T*>(data), count);
}

}  // namespace

void launch_gelu(const MatrixRef& data, Activation activation, cudaStream_t stream) {
  const size_t count = static_cast<size_t>(data.rows * data.cols);
  if (count == 0) return;
  const bool tanh_form = activation == Activation::gelu_tanh;
  switch (data.dtype) {
    case DType::f32: launch_typed<float>(data.data, count, tanh_form, stream); break;
    case DType::f16: launch_typed<__half>(data.data, count, tanh_form, stream); break;
    case DType::bf16: launch_typed<__nv_bfloat16>(data.data, count, tanh_form, stream); break;
    default: throw Error("cuda gelu: unsupported dtype " + std::string(dtype_name(data.dtype)));
  }
  HALFSERVE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace halfserve::cuda
