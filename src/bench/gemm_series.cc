#include "halfserve/bench/gemm_series.h"

#include <algorithm>
#include <random>

#include "halfserve/engine/backend.h"
#include "halfserve/engine/precision_cast.h"
#include "halfserve/util/error.h"

namespace halfserve {

GridSeries run_gemm_series(const BertConfig& c, int64_t num_labels, Precision precision, const GridOptions& options,
                           const GridInputs& inputs) {
  auto backend = create_backend({options.engine.device, options.engine.threads});
  const DType compute = backend->compute_dtype(precision);
  // int8 GEMMs read and write f32 (they quantize their input themselves).
  const DType activations = compute == DType::i8 ? DType::f32 : compute;
  GridSeries series;
  series.engine = "gemm";
  series.precision = std::string(precision_name(precision));
  series.description = "the model's GEMMs only (" + std::string(dtype_name(compute)) + ", " + std::to_string(c.num_layers) +
                       " layers x QKV, output, FFN in, FFN out, plus the head) on " + backend->description();
  // Random weights: GEMM speed does not depend on the values.
  std::mt19937 random(1);
  auto weights = [&](int64_t out, int64_t in, DType dst) {
    std::vector<float> w(static_cast<size_t>(out * in)), b(static_cast<size_t>(out));
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (auto& v : w) v = normal(random);
    const TensorView weight{DType::f32, {out, in}, std::as_bytes(std::span(w))};
    const TensorView bias{DType::f32, {out}, std::as_bytes(std::span(b))};
    const LinearSpec spec{in, out, compute, dst, std::nullopt, false};
    if (compute != DType::i8) return backend->prepare_linear(weight, bias, spec);
    const QuantizedWeight quantized = quantize_weight("gemm", weight, false);
    const TensorView levels{DType::i8, {out, in}, std::as_bytes(std::span(quantized.values))};
    const TensorView scales{DType::f32, {out}, std::as_bytes(std::span(quantized.scales))};
    return backend->prepare_linear(levels, bias, spec, &scales);
  };
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  const auto qkv = weights(3 * h, h, DType::f32), output = weights(h, h, DType::f32), ffn_in = weights(f, h, activations),
             ffn_out = weights(h, f, DType::f32), head = weights(std::max<int64_t>(1, num_labels), h, DType::f32);
  int64_t max_tokens = 1;
  for (const auto& cell : inputs.cells) max_tokens = std::max(max_tokens, cell.batch * cell.length);
  const size_t element = dtype_size(activations);
  const int64_t widest = std::max({f, 3 * h, num_labels});  // the widest activation any of the GEMMs reads or writes
  auto src = backend->allocate(static_cast<size_t>(max_tokens * widest) * 4);
  auto dst = backend->allocate(static_cast<size_t>(max_tokens * widest) * 4);
  std::fill_n(static_cast<std::byte*>(src.get()), static_cast<size_t>(max_tokens * widest) * element, std::byte{0});
  for (const InputBatch& cell_inputs : inputs.cells) {
    const int64_t tokens = cell_inputs.batch * cell_inputs.length;
    auto matrix = [&](void* data, DType dtype, int64_t cols) { return MatrixRef{data, dtype, tokens, cols}; };
    auto run_once = [&] {
      for (int64_t layer = 0; layer < c.num_layers; ++layer) {
        backend->linear(*qkv, matrix(src.get(), activations, h), matrix(dst.get(), DType::f32, 3 * h), nullptr);
        backend->linear(*output, matrix(src.get(), activations, h), matrix(dst.get(), DType::f32, h), nullptr);
        backend->linear(*ffn_in, matrix(src.get(), activations, h), matrix(dst.get(), activations, f), nullptr);
        backend->linear(*ffn_out, matrix(src.get(), activations, f), matrix(dst.get(), DType::f32, h), nullptr);
      }
      backend->linear(*head, matrix(src.get(), activations, h), matrix(dst.get(), DType::f32, std::max<int64_t>(1, num_labels)), nullptr);
      backend->synchronize();
    };
    LatencyCell cell = summarize_cell(cell_inputs, time_repeatedly(run_once, options));
    if (options.progress)
      options.progress("gemm " + series.precision + " len " + std::to_string(cell.length) + " batch " + std::to_string(cell.batch) +
                       ": median " + std::to_string(cell.median_ms) + " ms");
    series.cells.push_back(std::move(cell));
  }
  return series;
}

}  // namespace halfserve
