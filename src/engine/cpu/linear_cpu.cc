#include <cstring>
#include <mutex>
#include <unordered_map>

#include "engine/cpu/cpu_backend.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"

namespace halfserve::cpu {

namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// Row count used to let oneDNN pick the packed weight layout; the layout it picks does not depend on it.
constexpr int64_t kLayoutProbeRows = 256;
// Distinct row counts whose primitives are kept; beyond that oneDNN's own primitive cache still helps.
constexpr size_t kMaxCachedShapes = 256;

class CpuLinear final : public LinearWeights {
 public:
  CpuLinear(const TensorView& weight, const TensorView& bias, const LinearSpec& spec) : LinearWeights(spec) {
    const int64_t n = spec.out_features, k = spec.in_features;
    if (weight.shape != Shape{n, k}) throw Error("linear weight has shape " + shape_string(weight.shape) +
                                                 ", expected " + shape_string({n, k}));
    if (bias.shape != Shape{n}) throw Error("linear bias has shape " + shape_string(bias.shape));
    auto& engine = cpu_engine();
    const auto weights_type = dnnl_type(spec.compute_dtype);

    // The file's [out, in] matrix is oneDNN's {in, out} weights in `ba` order; reorder once into the layout
    // the GEMM kernels want.
    const std::vector<float> values = weight.to_float();
    dnnl::memory plain({{k, n}, weights_type, tag::ba}, engine);
    if (spec.compute_dtype == DType::bf16) {
      auto* out = static_cast<uint16_t*>(plain.get_data_handle());
      for (size_t i = 0; i < values.size(); ++i) out[i] = float_to_bfloat16(values[i]);
    } else {
      std::memcpy(plain.get_data_handle(), values.data(), values.size() * sizeof(float));
    }
    weights_desc_ = describe(kLayoutProbeRows, /*packed=*/false).weights_desc();
    packed_ = dnnl::memory(weights_desc_, engine);
    dnnl::reorder(plain, packed_).execute(thread_stream(), plain, packed_);

    bias_ = dnnl::memory({{1, n}, dt::f32, tag::ab}, engine);
    const std::vector<float> bias_values = bias.to_float();
    std::memcpy(bias_.get_data_handle(), bias_values.data(), bias_values.size() * sizeof(float));
    thread_stream().wait();
  }

  void run(const MatrixRef& src, const MatrixRef& dst, const float* residual) const {
    const LinearSpec& s = spec();
    if (src.cols != s.in_features || dst.cols != s.out_features || src.rows != dst.rows ||
        src.dtype != s.compute_dtype || dst.dtype != s.dst_dtype || (residual != nullptr) != s.add_residual)
      throw Error("linear called with operands that do not match its spec");
    if (src.rows == 0) return;
    auto& engine = cpu_engine();
    const int64_t m = src.rows;
    dnnl::memory src_memory({{m, s.in_features}, dnnl_type(src.dtype), tag::ab}, engine, src.data);
    dnnl::memory dst_memory({{m, s.out_features}, dnnl_type(dst.dtype), tag::ab}, engine, dst.data);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, src_memory}, {DNNL_ARG_WEIGHTS, packed_}, {DNNL_ARG_BIAS, bias_}, {DNNL_ARG_DST, dst_memory}};
    if (residual != nullptr) {
      const int index = s.activation ? 1 : 0;
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1] =
          dnnl::memory({{m, s.out_features}, dt::f32, tag::ab}, engine, const_cast<float*>(residual));
    }
    primitive(m).execute(thread_stream(), args);
    thread_stream().wait();
  }

 private:
  dnnl::matmul::primitive_desc describe(int64_t rows, bool packed) const {
    const LinearSpec& s = spec();
    const auto weights_type = dnnl_type(s.compute_dtype);
    dnnl::post_ops post_ops;
    if (s.activation)
      post_ops.append_eltwise(1.0f,
                              *s.activation == Activation::gelu_tanh ? dnnl::algorithm::eltwise_gelu_tanh
                                                                      : dnnl::algorithm::eltwise_gelu_erf,
                              0.0f, 0.0f);
    if (s.add_residual)
      post_ops.append_binary(dnnl::algorithm::binary_add, {{rows, s.out_features}, dt::f32, tag::ab});
    dnnl::primitive_attr attr;
    attr.set_post_ops(post_ops);
    const dnnl::memory::desc weights = packed ? weights_desc_
                                              : dnnl::memory::desc({s.in_features, s.out_features}, weights_type, tag::any);
    const dnnl::matmul::desc desc({{rows, s.in_features}, weights_type, tag::ab}, weights,
                                  {{1, s.out_features}, dt::f32, tag::ab},
                                  {{rows, s.out_features}, dnnl_type(s.dst_dtype), tag::ab});
    return dnnl::matmul::primitive_desc(desc, attr, cpu_engine());
  }

  // Returned by value: the handle is reference-counted, so a cache reset cannot pull it from under a caller.
  dnnl::matmul primitive(int64_t rows) const {
    std::lock_guard lock(mutex_);
    auto it = primitives_.find(rows);
    if (it != primitives_.end()) return it->second;
    if (primitives_.size() >= kMaxCachedShapes) primitives_.clear();
    return primitives_.emplace(rows, dnnl::matmul(describe(rows, /*packed=*/true))).first->second;
  }

  dnnl::memory::desc weights_desc_;
  dnnl::memory packed_;
  dnnl::memory bias_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<int64_t, dnnl::matmul> primitives_;
};

}  // namespace

std::unique_ptr<LinearWeights> CpuBackend::prepare_linear(const TensorView& weight, const TensorView& bias,
                                                          const LinearSpec& spec, const TensorView* weight_scales) {
  if (weight_scales != nullptr) throw Error("int8 weights are not supported by this build's cpu linear");
  if (spec.compute_dtype != DType::f32 && spec.compute_dtype != DType::bf16)
    throw Error("cpu backend computes GEMMs in F32 or BF16, not " + std::string(dtype_name(spec.compute_dtype)));
  return std::make_unique<CpuLinear>(weight, bias, spec);
}

void CpuBackend::linear(const LinearWeights& weights, const MatrixRef& src, const MatrixRef& dst, const float* residual) {
  static_cast<const CpuLinear&>(weights).run(src, dst, residual);
}

}  // namespace halfserve::cpu
