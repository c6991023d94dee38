#include "halfserve/engine/backend.h"

#include "engine/cpu/cpu_backend.h"
#include "halfserve/util/error.h"

namespace halfserve {

std::shared_ptr<Backend> create_backend(const BackendOptions& options) {
  switch (options.device) {
    case Device::cpu:
      return std::make_shared<cpu::CpuBackend>(options.threads);
    case Device::cuda:
      throw Error("device cuda: this halfserve build has no CUDA backend (use --device cpu)");
  }
  throw Error("unknown device");
}

}  // namespace halfserve
