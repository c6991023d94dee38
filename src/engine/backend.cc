#include "halfserve/engine/backend.h"

#include "engine/cpu/cpu_backend.h"
#ifdef HALFSERVE_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif
#include "halfserve/util/error.h"

namespace halfserve {

std::shared_ptr<Backend> create_backend(const BackendOptions& options) {
  switch (options.device) {
    case Device::cpu:
      return std::make_shared<cpu::CpuBackend>(options.threads);
    case Device::cuda:
#ifdef HALFSERVE_WITH_CUDA
      return std::make_shared<cuda::CudaBackend>(0);
#else
      throw Error("device cuda: this halfserve build has no CUDA backend (nvcc was not found at build time; use --device cpu)");
#endif
  }
  throw Error("unknown device");
}

}  // namespace halfserve
