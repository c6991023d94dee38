#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "halfserve/util/error.h"

// CUDA and cuBLASLt failures become halfserve::Error naming the call and the library's own message, so a
// failed launch or an out-of-memory on the device reaches the user as a clear error instead of a crash.
namespace halfserve::cuda {

inline void check_cuda(cudaError_t status, const char* call) {
  if (status != cudaSuccess)
    throw Error(std::string("cuda: ") + call + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

inline void check_cublas(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuda: ") + call + " failed: " + cublasLtGetStatusName(status) + " (cuBLAS status " +
                std::to_string(static_cast<int>(status)) + ")");
}

}  // namespace halfserve::cuda

#define HALFSERVE_CUDA_CHECK(call) ::halfserve::cuda::check_cuda((call), #call)
#define HALFSERVE_CUBLAS_CHECK(call) ::halfserve::cuda::check_cublas((call), #call)
