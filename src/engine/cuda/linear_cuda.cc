// Linear layers as cuBLASLt matmuls. The row-major product dst[rows, out] = src[rows, in] · weightᵀ is, in
// cuBLASLt's column-major terms, D[out, rows] = Wᵀ(A) · src(B) with A = the file's [out, in] matrix read
// transposed ("TN", the layout cuBLASLt's tensor-core kernels prefer). The bias rides in the epilogue and the
// residual enters as C with beta = 1, so bias + residual cost no extra pass.
#include <cublasLt.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/kernels.h"

namespace halfserve::cuda {

namespace {

// Distinct row counts whose chosen algorithm is remembered per layer.
constexpr size_t kMaxCachedShapes = 512;

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw Error("cuda linear: unsupported dtype " + std::string(dtype_name(dtype)));
  }
}

struct MatrixLayout {
  cublasLtMatrixLayout_t handle = nullptr;
  MatrixLayout(DType dtype, uint64_t rows, uint64_t cols, int64_t ld) {
    HALFSERVE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&handle, cuda_type(dtype), rows, cols, ld));
  }
  ~MatrixLayout() { cublasLtMatrixLayoutDestroy(handle); }
  MatrixLayout(const MatrixLayout&) = delete;
  MatrixLayout& operator=(const MatrixLayout&) = delete;
};

class CudaLinear final : public LinearWeights {
 public:
  CudaLinear(CudaBackend& backend, const TensorView& weight, const TensorView& bias, const LinearSpec& spec)
      : LinearWeights(spec), backend_(backend) {
    const int64_t n = spec.out_features, k = spec.in_features;
    if (weight.shape != Shape{n, k})
      throw Error("linear weight has shape " + shape_string(weight.shape) + ", expected " + shape_string({n, k}));
    if (bias.shape != Shape{n}) throw Error("linear bias has shape " + shape_string(bias.shape));
    if (weight.dtype == DType::i8) throw InvalidArgument("int8 weights run on the CPU backend only; convert to fp16 for cuda");
    // The residual enters inside the GEMM (as C) and GELU runs after it, so the two cannot be combined; the
    // residual is f32, like the sums it feeds.
    if (spec.add_residual && spec.activation) throw Error("cuda linear: a layer cannot have both an activation and a residual");
    if (spec.add_residual && spec.dst_dtype != DType::f32) throw Error("cuda linear: a residual layer must write F32");
    weight_ = backend.upload(weight, spec.compute_dtype);
    // cuBLASLt reads the bias in D's type.
    bias_ = backend.upload(bias, spec.dst_dtype);

    // fp32 stays fp32 (no TF32) so it is a fair baseline; fp16/bf16 accumulate in fp32.
    HALFSERVE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
    HALFSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
    HALFSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep)));
    // cuBLASLt's GELU epilogue is the tanh form only, and not offered for every type pair: GELU (either form)
    // runs as one elementwise kernel after the bias epilogue.
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    HALFSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    const void* bias_pointer = bias_.data;
    HALFSERVE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_pointer, sizeof(bias_pointer)));
    weight_layout_ = std::make_unique<MatrixLayout>(spec.compute_dtype, k, n, k);
  }

  ~CudaLinear() override {
    if (desc_ != nullptr) cublasLtMatmulDescDestroy(desc_);
  }

  void run(const MatrixRef& src, const MatrixRef& dst, const float* residual) const {
    const LinearSpec& s = spec();
    if (src.dtype != s.compute_dtype || src.cols != s.in_features)
      throw Error("cuda linear: src is " + std::string(dtype_name(src.dtype)) + " with " + std::to_string(src.cols) +
                  " columns, expected " + std::string(dtype_name(s.compute_dtype)) + " with " + std::to_string(s.in_features));
    if (dst.dtype != s.dst_dtype || dst.cols != s.out_features || dst.rows != src.rows)
      throw Error("cuda linear: dst shape or type does not match the layer");
    if ((residual != nullptr) != s.add_residual) throw Error("cuda linear: residual given where the layer expects none, or missing");
    const int64_t rows = src.rows;
    if (rows == 0) return;

    StreamContext& ctx = backend_.context();
    const MatrixLayout src_layout(s.compute_dtype, static_cast<uint64_t>(s.in_features), static_cast<uint64_t>(rows), s.in_features);
    const MatrixLayout dst_layout(s.dst_dtype, static_cast<uint64_t>(s.out_features), static_cast<uint64_t>(rows), s.out_features);
    const cublasLtMatmulAlgo_t algo = algorithm(rows, src_layout.handle, dst_layout.handle, ctx);
    const float alpha = 1.0f, beta = residual != nullptr ? 1.0f : 0.0f;
    // With beta = 0, C is not read; it still needs a valid pointer and layout.
    const void* c = residual != nullptr ? static_cast<const void*>(residual) : dst.data;
    HALFSERVE_CUBLAS_CHECK(cublasLtMatmul(backend_.cublas(), desc_, &alpha, weight_.data, weight_layout_->handle, src.data,
                                          src_layout.handle, &beta, c, dst_layout.handle, dst.data, dst_layout.handle, &algo,
                                          ctx.gemm_workspace.get(), ctx.gemm_workspace_bytes, ctx.stream));
    if (s.activation) launch_gelu(dst, *s.activation, ctx.stream);
  }

 private:
  // cuBLASLt's heuristic's first choice for this row count, looked up once.
  cublasLtMatmulAlgo_t algorithm(int64_t rows, cublasLtMatrixLayout_t src_layout, cublasLtMatrixLayout_t dst_layout,
                                 const StreamContext& ctx) const {
    std::lock_guard lock(mutex_);
    if (auto it = algorithms_.find(rows); it != algorithms_.end()) return it->second;
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(ctx.stream, &capturing);
    // Choosing belongs to an op-by-op run; a recording that meets an unchosen shape gives up and runs op by op.
    if (capturing != cudaStreamCaptureStatusNone) throw Error("cuda linear: no algorithm chosen yet for " + std::to_string(rows) + " rows");
    cublasLtMatmulPreference_t preference = nullptr;
    HALFSERVE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    const uint64_t workspace = ctx.gemm_workspace_bytes;
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(backend_.cublas(), desc_, weight_layout_->handle, src_layout,
                                                                 dst_layout, dst_layout, preference, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS || found == 0)
      throw Error("cuda linear: cuBLASLt has no algorithm for " + std::string(dtype_name(spec().compute_dtype)) + " [" +
                  std::to_string(rows) + " x " + std::to_string(spec().in_features) + "] x [" + std::to_string(spec().in_features) +
                  " x " + std::to_string(spec().out_features) + "] (status " + std::to_string(static_cast<int>(status)) + ")");
    if (algorithms_.size() >= kMaxCachedShapes) algorithms_.clear();
    algorithms_.emplace(rows, result.algo);
    return result.algo;
  }

  CudaBackend& backend_;
  DeviceTensor weight_, bias_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  std::unique_ptr<MatrixLayout> weight_layout_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<int64_t, cublasLtMatmulAlgo_t> algorithms_;
};

}  // namespace

std::unique_ptr<LinearWeights> CudaBackend::prepare_linear(const TensorView& weight, const TensorView& bias, const LinearSpec& spec,
                                                           const TensorView* weight_scales) {
  if (spec.compute_dtype == DType::i8 || weight_scales != nullptr)
    throw InvalidArgument("int8 weights run on the CPU backend only; use fp16, bf16 or fp32 on cuda");
  return std::make_unique<CudaLinear>(*this, weight, bias, spec);
}

void CudaBackend::linear(const LinearWeights& weights, const MatrixRef& src, const MatrixRef& dst, const float* residual) {
  static_cast<const CudaLinear&>(weights).run(src, dst, residual);
}

}  // namespace halfserve::cuda
