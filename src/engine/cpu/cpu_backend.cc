#include "engine/cpu/cpu_backend.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "halfserve/engine/device.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"

namespace halfserve::cpu {

namespace {

std::string isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::sse41: return "sse41";
    default: return "isa 0x" + std::to_string(static_cast<int>(isa));
  }
}

}  // namespace

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

dnnl::memory::data_type dnnl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return dnnl::memory::data_type::f32;
    case DType::bf16: return dnnl::memory::data_type::bf16;
    case DType::f16: return dnnl::memory::data_type::f16;
    case DType::i32: return dnnl::memory::data_type::s32;
    case DType::i8: return dnnl::memory::data_type::s8;
    case DType::u8: return dnnl::memory::data_type::u8;
    default: throw Error("dtype " + std::string(dtype_name(dtype)) + " has no oneDNN equivalent");
  }
}

bool has_native_bf16() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (isa & bf16) == bf16;
}

CpuBackend::CpuBackend(int threads) : threads_(threads) {
  if (threads < 0) throw InvalidArgument("thread count must be positive, got " + std::to_string(threads));
  // OpenMP's thread count is per calling thread. Setting it here also sizes the constructing thread's team for
  // what it runs outside run_sequence (the bench's GEMM-only peer); every model call sets its own below.
  threads_ = threads > 0 ? threads : default_cpu_threads();
  omp_set_num_threads(threads_);
}

// oneDNN fixes a GEMM's split across threads when its primitive is created, for the creating thread's team, and
// the split decides the order of the sums, so the last bits of the result. The primitives are created on first use
// and shared by every caller of the model. Without this, a request's bytes would depend on which thread had first
// run its shape — a serving worker with a smaller team, the thread that warmed the model up — and so on what else
// the server had been running. With it, every call of a model computes with the model's own thread count.
void CpuBackend::run_sequence(std::unique_ptr<CallerState>&, const OpSequence&, const std::function<void()>& ops) {
  const int caller_threads = omp_get_max_threads();
  if (caller_threads == threads_) {
    ops();
    return;
  }
  omp_set_num_threads(threads_);
  try {
    ops();
  } catch (...) {
    omp_set_num_threads(caller_threads);
    throw;
  }
  omp_set_num_threads(caller_threads);
}

std::string CpuBackend::description() const {
  const dnnl::version_t* version = dnnl::version();
  return "cpu: oneDNN " + std::to_string(version->major) + "." + std::to_string(version->minor) + "." +
         std::to_string(version->patch) + ", " + isa_name(dnnl::get_effective_cpu_isa()) + ", " +
         std::to_string(threads_) + " threads" +
         (has_int8_dot_product() ? "" : " (no VNNI: int8 runs as f32 GEMMs on the dequantized values)");
}

DType CpuBackend::compute_dtype(Precision precision) const {
  // No x86 CPU before AVX512-FP16 multiplies fp16 natively, and oneDNN 2.6 has no fp16 GEMM here: fp16
  // weights are widened (exactly) to f32. bf16 runs natively where the CPU has AVX512-BF16, else as f32.
  // int8 runs as s8 GEMMs where the CPU has VNNI; elsewhere as f32 GEMMs on the same dequantized numbers
  // (oneDNN's pre-VNNI int8 kernels saturate: see CpuInt8AsF32Linear).
  if (precision == Precision::int8) return DType::i8;
  if (precision == Precision::bf16 && has_native_bf16()) return DType::bf16;
  return DType::f32;
}

std::shared_ptr<void> CpuBackend::allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* memory = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (memory == nullptr) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
  return std::shared_ptr<void>(memory, std::free);
}

void CpuBackend::copy_to_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

DeviceTensor CpuBackend::upload(const TensorView& tensor, std::optional<DType> as) {
  const DType dtype = as.value_or(tensor.dtype);
  const bool aligned = reinterpret_cast<uintptr_t>(tensor.data.data()) % dtype_size(dtype) == 0;
  if (dtype == tensor.dtype && aligned) {
    // Host memory already: use the model's bytes in place (the model outlives the backend tensors).
    return DeviceTensor{nullptr, tensor.data.data(), dtype, tensor.shape};
  }
  const int64_t count = tensor.numel();
  auto memory = allocate(static_cast<size_t>(count) * dtype_size(dtype));
  if (dtype == tensor.dtype) {
    std::memcpy(memory.get(), tensor.data.data(), tensor.data.size());
  } else if (dtype == DType::f32) {
    auto* out = static_cast<float*>(memory.get());
    for (int64_t i = 0; i < count; ++i) out[i] = tensor.float_at(i);
  } else if (dtype == DType::bf16) {
    auto* out = static_cast<uint16_t*>(memory.get());
    for (int64_t i = 0; i < count; ++i) out[i] = float_to_bfloat16(tensor.float_at(i));
  } else {
    throw Error("cannot upload a tensor as " + std::string(dtype_name(dtype)));
  }
  const void* data = memory.get();
  return DeviceTensor{std::move(memory), data, dtype, tensor.shape};
}

}  // namespace halfserve::cpu
