#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/kernels.h"
#include "halfserve/util/half.h"

namespace halfserve::cuda {

namespace {

// cuBLASLt's own recommendation for Hopper; smaller GPUs use less of it.
constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;
constexpr size_t kInitialPinnedBytes = size_t{1} << 20;

std::atomic<uint64_t> next_generation{1};

std::shared_ptr<void> device_memory(size_t bytes) {
  void* memory = nullptr;
  const cudaError_t status = cudaMalloc(&memory, bytes == 0 ? 256 : bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free allocation error so later calls are not blamed
    throw Error("cuda: out of device memory allocating " + std::to_string(bytes) + " bytes (" + cudaGetErrorString(status) + ")");
  }
  return std::shared_ptr<void>(memory, [](void* p) { cudaFree(p); });
}

std::shared_ptr<void> pinned_memory(size_t bytes) {
  void* memory = nullptr;
  HALFSERVE_CUDA_CHECK(cudaMallocHost(&memory, bytes));
  return std::shared_ptr<void>(memory, [](void* p) { cudaFreeHost(p); });
}

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Host bytes of `tensor` converted to `dtype` (f32, f16 or bf16).
std::vector<std::byte> host_bytes_as(const TensorView& tensor, DType dtype) {
  if (dtype == tensor.dtype) return {tensor.data.begin(), tensor.data.end()};
  const int64_t count = tensor.numel();
  std::vector<std::byte> bytes(static_cast<size_t>(count) * dtype_size(dtype));
  if (dtype == DType::f32) {
    auto* out = reinterpret_cast<float*>(bytes.data());
    for (int64_t i = 0; i < count; ++i) out[i] = tensor.float_at(i);
  } else if (dtype == DType::f16) {
    auto* out = reinterpret_cast<uint16_t*>(bytes.data());
    for (int64_t i = 0; i < count; ++i) out[i] = float_to_half(tensor.float_at(i));
  } else if (dtype == DType::bf16) {
    auto* out = reinterpret_cast<uint16_t*>(bytes.data());
    for (int64_t i = 0; i < count; ++i) out[i] = float_to_bfloat16(tensor.float_at(i));
  } else {
    throw Error("cuda: cannot upload a tensor as " + std::string(dtype_name(dtype)));
  }
  return bytes;
}

}  // namespace

StreamContext::~StreamContext() {
  if (stream != nullptr) {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
}

CudaBackend::CudaBackend(int device_index) : device_index_(device_index), generation_(next_generation++) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw Error(std::string("device cuda: no usable CUDA GPU (") +
                (status != cudaSuccess ? cudaGetErrorString(status) : "no device found") + "); use --device cpu");
  }
  if (device_index < 0 || device_index >= count)
    throw Error("device cuda: GPU " + std::to_string(device_index) + " does not exist (" + std::to_string(count) + " found)");
  HALFSERVE_CUDA_CHECK(cudaSetDevice(device_index_));
  HALFSERVE_CUDA_CHECK(cudaGetDeviceProperties(&properties_, device_index_));
  // The kernels are built for sm_80 and sm_90 (CMAKE_CUDA_ARCHITECTURES); older GPUs would find no kernel image.
  if (properties_.major < 8)
    throw Error("device cuda: " + std::string(properties_.name) + " is sm_" + std::to_string(properties_.major) +
                std::to_string(properties_.minor) + "; this build of halfserve needs sm_80 (Ampere) or newer");
  HALFSERVE_CUBLAS_CHECK(cublasLtCreate(&cublas_));
}

CudaBackend::~CudaBackend() {
  {
    std::lock_guard lock(contexts_mutex_);
    contexts_.clear();
  }
  if (cublas_ != nullptr) cublasLtDestroy(cublas_);
}

std::string CudaBackend::description() const {
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  const size_t lt = cublasLtGetVersion();
  return "cuda: " + std::string(properties_.name) + " (sm_" + std::to_string(properties_.major) + std::to_string(properties_.minor) +
         ", " + std::to_string(properties_.multiProcessorCount) + " SMs, " +
         std::to_string(properties_.totalGlobalMem >> 30) + " GiB), CUDA runtime " + std::to_string(runtime / 1000) + "." +
         std::to_string(runtime % 1000 / 10) + ", cuBLASLt " + std::to_string(lt / 10000) + "." + std::to_string(lt / 100 % 100) +
         "." + std::to_string(lt % 100) + ", fp32 GEMMs without TF32";
}

DType CudaBackend::compute_dtype(Precision precision) const {
  switch (precision) {
    case Precision::fp32: return DType::f32;
    case Precision::fp16: return DType::f16;
    case Precision::bf16: return DType::bf16;
    case Precision::int8:
      throw InvalidArgument("precision int8 runs on the CPU backend only; on --device cuda use fp16, bf16 or fp32");
  }
  throw Error("unknown precision");
}

StreamContext& CudaBackend::context() {
  struct Cached {
    uint64_t generation = 0;
    StreamContext* context = nullptr;
  };
  thread_local Cached cached;
  if (cached.generation == generation_) return *cached.context;

  std::lock_guard lock(contexts_mutex_);
  auto& slot = contexts_[std::this_thread::get_id()];
  if (!slot) {
    HALFSERVE_CUDA_CHECK(cudaSetDevice(device_index_));
    auto created = std::make_unique<StreamContext>();
    HALFSERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&created->stream, cudaStreamNonBlocking));
    created->gemm_workspace = device_memory(kGemmWorkspaceBytes);
    created->gemm_workspace_bytes = kGemmWorkspaceBytes;
    created->pinned = pinned_memory(kInitialPinnedBytes);
    created->pinned_bytes = kInitialPinnedBytes;
    slot = std::move(created);
  }
  cached = {generation_, slot.get()};
  return *slot;
}

std::shared_ptr<void> CudaBackend::allocate(size_t bytes) {
  HALFSERVE_CUDA_CHECK(cudaSetDevice(device_index_));
  return device_memory(bytes);
}

void CudaBackend::stage_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  StreamContext& ctx = context();
  const size_t offset = round_up(ctx.pinned_used, 64);
  if (offset + bytes > ctx.pinned_bytes) {
    // Earlier staged copies may still be reading the buffer: wait for them before reusing or replacing it.
    HALFSERVE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    ctx.pinned_used = 0;
    if (bytes > ctx.pinned_bytes) {
      ctx.pinned_bytes = std::max(bytes, 2 * ctx.pinned_bytes);
      ctx.pinned = pinned_memory(ctx.pinned_bytes);
    }
    return stage_to_device(dst, src, bytes);
  }
  auto* staging = static_cast<std::byte*>(ctx.pinned.get()) + offset;
  std::memcpy(staging, src, bytes);
  HALFSERVE_CUDA_CHECK(cudaMemcpyAsync(dst, staging, bytes, cudaMemcpyHostToDevice, ctx.stream));
  ctx.pinned_used = offset + bytes;
}

void CudaBackend::copy_to_device(void* dst, const void* src, size_t bytes) { stage_to_device(dst, src, bytes); }

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  StreamContext& ctx = context();
  if (bytes > ctx.pinned_bytes) {
    HALFSERVE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    ctx.pinned_bytes = std::max(bytes, 2 * ctx.pinned_bytes);
    ctx.pinned = pinned_memory(ctx.pinned_bytes);
  }
  // The copy queues behind the work that produces `src`; staged uploads before it have been read by then.
  HALFSERVE_CUDA_CHECK(cudaMemcpyAsync(ctx.pinned.get(), src, bytes, cudaMemcpyDeviceToHost, ctx.stream));
  HALFSERVE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  ctx.pinned_used = 0;
  std::memcpy(dst, ctx.pinned.get(), bytes);
}

void CudaBackend::synchronize() {
  StreamContext& ctx = context();
  HALFSERVE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  ctx.pinned_used = 0;
}

DeviceTensor CudaBackend::upload(const TensorView& tensor, std::optional<DType> as) {
  // I8 tensors carry per-row scales only the CPU backend applies: converting their levels would drop the scales.
  if (tensor.dtype == DType::i8) throw InvalidArgument("int8 weights run on the CPU backend only; convert to fp16 for cuda");
  DType dtype = as.value_or(tensor.dtype);
  if (dtype != DType::f32 && dtype != DType::f16 && dtype != DType::bf16) dtype = DType::f32;
  const std::vector<std::byte> bytes = host_bytes_as(tensor, dtype);
  auto memory = allocate(bytes.size());
  // Weights are uploaded once at load, on a private stream waited for before returning: no kernel can read a
  // half-written weight, and no device-wide synchronisation disturbs another thread's graph capture.
  cudaStream_t stream = nullptr;
  HALFSERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const cudaError_t copied = cudaMemcpyAsync(memory.get(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice, stream);
  const cudaError_t waited = cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  HALFSERVE_CUDA_CHECK(copied);
  HALFSERVE_CUDA_CHECK(waited);
  const void* data = memory.get();
  return DeviceTensor{std::move(memory), data, dtype, tensor.shape};
}

void CudaBackend::embed_layer_norm(const PackedTokens& tokens, const EmbeddingTables& tables, const LayerNormParams& norm,
                                   const MatrixRef& dst, const MatrixRef* dst_low) {
  launch_embed_layer_norm(tokens, tables, norm, dst, dst_low, context().stream);
}

void CudaBackend::layer_norm(const float* src, const LayerNormParams& norm, const MatrixRef& dst, const MatrixRef* dst_low) {
  launch_layer_norm(src, norm, dst, dst_low, context().stream);
}

void CudaBackend::attention(const AttentionArgs& args) {
  if (args.sequence_offsets.size() < 2) return;
  const size_t sequences = args.sequence_offsets.size() - 1;
  int64_t longest = 0;
  for (size_t s = 1; s < args.sequence_offsets.size(); ++s)
    longest = std::max(longest, args.sequence_offsets[s] - args.sequence_offsets[s - 1]);
  StreamContext& ctx = context();
  if (args.device_offsets != nullptr) {
    // The caller uploaded them once for all layers (and a recorded graph must not stage anything).
    launch_attention(args, args.device_offsets, static_cast<int>(sequences), static_cast<int>(longest), ctx.stream);
    return;
  }
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(ctx.stream, &capturing);
  // Staging copies from pinned memory by address: a recording would replay whatever lies there later.
  if (capturing != cudaStreamCaptureStatusNone) throw Error("cuda attention: sequence offsets must be in device memory while recording");
  const std::vector<int32_t> offsets(args.sequence_offsets.begin(), args.sequence_offsets.end());
  const size_t bytes = offsets.size() * sizeof(int32_t);
  if (ctx.offsets_bytes < bytes) {
    // The old buffer may still be read by queued kernels.
    HALFSERVE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    ctx.offsets_bytes = std::max<size_t>(bytes, 4096);
    ctx.offsets = allocate(ctx.offsets_bytes);
  }
  stage_to_device(ctx.offsets.get(), offsets.data(), bytes);
  launch_attention(args, static_cast<const int32_t*>(ctx.offsets.get()), static_cast<int>(sequences), static_cast<int>(longest),
                   ctx.stream);
}

namespace {

// Graphs pay off where launches dominate: small batches. Larger ones run op by op.
constexpr int64_t kMaxGraphTokens = 4096;
constexpr size_t kMaxGraphs = 256;

// A capture may fail for passing reasons (another thread's synchronising call); after this many, a shape runs op by
// op until its buffers move.
constexpr int kMaxCaptureFailures = 3;

// One caller's recorded forward passes, by model and batch shape.
struct GraphState final : CallerState {
  struct Entry {
    uint64_t generation = 0;
    const StreamContext* context = nullptr;  // the stream and GEMM workspace the recording uses
    int eager_runs = 0;
    int failures = 0;
    cudaGraphExec_t exec = nullptr;
  };
  ~GraphState() override { clear(); }
  static void drop(Entry& entry) {
    if (entry.exec != nullptr) cudaGraphExecDestroy(entry.exec);
    entry.exec = nullptr;
  }
  void clear() {
    for (auto& [key, entry] : entries) drop(entry);
    entries.clear();
  }
  std::unordered_map<std::string, Entry> entries;
};

}  // namespace

void CudaBackend::run_sequence(std::unique_ptr<CallerState>& state, const OpSequence& sequence, const std::function<void()>& ops) {
  if (sequence.tokens > kMaxGraphTokens) return ops();
  auto* graphs = dynamic_cast<GraphState*>(state.get());
  if (graphs == nullptr) {
    state = std::make_unique<GraphState>();
    graphs = static_cast<GraphState*>(state.get());
  }
  // The model id keeps models apart (their weights); the shape fixes every op and argument.
  std::string key = std::to_string(sequence.model_id);
  key += sequence.key_mask ? "/holes" : "/dense";
  key += sequence.head ? "+head:" : ":";
  for (size_t s = 1; s < sequence.sequence_offsets.size(); ++s)
    key += std::to_string(sequence.sequence_offsets[s] - sequence.sequence_offsets[s - 1]) + ",";
  if (graphs->entries.size() >= kMaxGraphs && !graphs->entries.contains(key)) graphs->clear();
  GraphState::Entry& entry = graphs->entries[key];
  StreamContext& ctx = context();
  if (entry.generation != sequence.generation || entry.context != &ctx) {
    // The caller's buffers moved, or it now runs on another thread (stream, GEMM workspace): a recording on the
    // old addresses must never run again.
    GraphState::drop(entry);
    entry = GraphState::Entry{sequence.generation, &ctx};
  }
  if (entry.exec != nullptr) {
    if (cudaGraphLaunch(entry.exec, ctx.stream) == cudaSuccess) return;
    cudaGetLastError();
    GraphState::drop(entry);
    entry.failures = kMaxCaptureFailures;
    return ops();
  }
  // The first run of a shape goes op by op: it chooses the GEMM algorithms and sets kernel attributes, which
  // must not happen inside a capture.
  if (entry.failures >= kMaxCaptureFailures || entry.eager_runs++ == 0) return ops();

  HALFSERVE_CUDA_CHECK(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeThreadLocal));
  bool recorded = true;
  try {
    ops();
  } catch (...) {  // whatever it was, the capture must end, or the stream stays in capture mode
    recorded = false;
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(ctx.stream, &graph);
  cudaGraphExec_t exec = nullptr;
  if (recorded && ended == cudaSuccess && graph != nullptr && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess) {
    entry.exec = exec;
  } else {
    ++entry.failures;
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  cudaGetLastError();  // a failed capture leaves no error behind for the next launch to report
  if (entry.exec != nullptr && cudaGraphLaunch(entry.exec, ctx.stream) == cudaSuccess) return;
  cudaGetLastError();
  GraphState::drop(entry);
  ops();  // nothing ran during the capture: run for real (a genuine error is thrown from here)
}

}  // namespace halfserve::cuda
