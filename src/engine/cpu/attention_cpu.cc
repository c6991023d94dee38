#include <algorithm>
#include <exception>
#include <cmath>
#include <unordered_map>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "halfserve/util/error.h"

namespace halfserve::cpu {

namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;

// Sequences per attention step: bounds the fp32 score buffer (sequences × heads × length²) to a few MB so it
// stays in cache and never grows with the batch.
constexpr int64_t kScoreBudgetBytes = 8 << 20;

// Mask arithmetic in fp32; −10000 as in google-research BERT (exp underflows to exactly 0 either way).
constexpr float kMaskedScore = -10000.0f;

// Distinct attention shapes whose primitives are kept; the handles are reference-counted, so a reset never
// invalidates primitives in use.
constexpr size_t kMaxCachedAttentionShapes = 1024;

// Q, K and V of `sequences` consecutive sequences of `length` tokens, read in place from the fused projection:
// [sequence, position, head, d] viewed as [sequence, head, position, d] through strides (no transpose pass).
dnnl::memory::desc qkv_view(int64_t sequences, int64_t length, int64_t heads, int64_t head_size, DType dtype, bool transposed) {
  const int64_t row = 3 * heads * head_size;
  return transposed ? dnnl::memory::desc({sequences, heads, head_size, length}, dnnl_type(dtype), dims{length * row, head_size, 1, row})
                    : dnnl::memory::desc({sequences, heads, length, head_size}, dnnl_type(dtype), dims{length * row, head_size, row, 1});
}

dnnl::memory::desc context_view(int64_t sequences, int64_t length, int64_t heads, int64_t head_size, DType dtype) {
  const int64_t hidden = heads * head_size;
  return dnnl::memory::desc({sequences, heads, length, head_size}, dnnl_type(dtype), dims{length * hidden, head_size, hidden, 1});
}

}  // namespace

CpuBackend::AttentionPrimitives CpuBackend::attention_primitives(const AttentionKey& key) {
  std::lock_guard lock(attention_mutex_);
  auto it = attention_cache_.find(key);
  if (it != attention_cache_.end()) return it->second;
  if (attention_cache_.size() >= kMaxCachedAttentionShapes) attention_cache_.clear();
  const auto [sequences, length, heads, head_size, dtype, masked] = key;
  auto& engine = cpu_engine();

  // scores = Q·Kᵀ / sqrt(d) (+ mask), accumulated and kept in fp32 whatever Q and K are.
  const dnnl::memory::desc scores({sequences, heads, length, length}, dt::f32, tag::abcd);
  dnnl::primitive_attr score_attr;
  score_attr.set_output_scales(0, {1.0f / std::sqrt(static_cast<float>(head_size))});
  if (masked) {
    dnnl::post_ops score_ops;
    score_ops.append_binary(dnnl::algorithm::binary_add, {{sequences, 1, 1, length}, dt::f32, tag::abcd});
    score_attr.set_post_ops(score_ops);
  }
  dnnl::matmul score_primitive(dnnl::matmul::primitive_desc(
      dnnl::matmul::desc(qkv_view(sequences, length, heads, head_size, dtype, false),
                         qkv_view(sequences, length, heads, head_size, dtype, true), scores),
      score_attr, engine));

  // The softmax reads fp32 scores and writes probabilities in the activation type for the second GEMM.
  const dnnl::memory::desc probabilities({sequences, heads, length, length}, dnnl_type(dtype), tag::abcd);
  dnnl::softmax_v2_forward softmax_primitive(dnnl::softmax_v2_forward::primitive_desc(
      dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::softmax_accurate, scores,
                                     probabilities, 3),
      engine));

  dnnl::matmul context_primitive(dnnl::matmul::primitive_desc(
      dnnl::matmul::desc(probabilities, qkv_view(sequences, length, heads, head_size, dtype, false),
                         context_view(sequences, length, heads, head_size, dtype)),
      engine));

  return attention_cache_.emplace(key, AttentionPrimitives{score_primitive, softmax_primitive, context_primitive})
      .first->second;
}

void CpuBackend::attention(const AttentionArgs& args) {
  const int64_t heads = args.num_heads, head_size = args.head_size, hidden = heads * head_size;
  const DType dtype = args.qkv_dtype;
  if (dtype != DType::f32 && dtype != DType::bf16) throw Error("attention runs on F32 or BF16 activations");
  if (args.context.dtype != dtype || args.context.cols != hidden) throw Error("attention context has the wrong shape or type");
  const auto& offsets = args.sequence_offsets;
  if (offsets.empty()) return;
  if (args.context.rows != offsets.back()) throw Error("attention context rows do not match the tokens");

  // Runs of consecutive sequences of equal length share one call (a full-length batch is a few runs); a ragged
  // batch costs one call per distinct run, each on its real length only.
  struct Run {
    size_t first;
    int64_t count, length;
  };
  std::vector<Run> runs;
  const size_t sequences = offsets.size() - 1;
  for (size_t first = 0; first < sequences;) {
    const int64_t length = offsets[first + 1] - offsets[first];
    if (length == 0) {
      ++first;
      continue;
    }
    const int64_t per_sequence = heads * length * length * static_cast<int64_t>(sizeof(float));
    const auto budget = static_cast<size_t>(std::max<int64_t>(1, kScoreBudgetBytes / per_sequence));
    size_t count = 1;
    while (first + count < sequences && count < budget && offsets[first + count + 1] - offsets[first + count] == length) ++count;
    runs.push_back({first, static_cast<int64_t>(count), length});
    first += count;
  }
  // Many runs: one thread per run, each primitive single-threaded inside the parallel region (one fork-join for
  // the whole batch instead of three per run). Few runs: each primitive uses every thread itself.
  const bool across_runs = static_cast<int>(runs.size()) >= 2 * threads_;
  if (across_runs) {
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic)
    for (size_t r = 0; r < runs.size(); ++r) {
      try {
        attend_run(args, runs[r].first, runs[r].count, runs[r].length);
      } catch (...) {
#pragma omp critical
        failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
  } else {
    for (const Run& run : runs) attend_run(args, run.first, run.count, run.length);
  }
}

void CpuBackend::attend_run(const AttentionArgs& args, size_t first, int64_t n, int64_t length) {
  const int64_t heads = args.num_heads, head_size = args.head_size, hidden = heads * head_size;
  const DType dtype = args.qkv_dtype;
  auto& engine = cpu_engine();
  auto& stream = thread_stream();
  const size_t element = dtype_size(dtype);
  // Per-thread scratch, grown once and reused: no allocation per call in steady state.
  thread_local std::vector<float> score_buffer, mask_buffer;
  thread_local std::vector<std::byte> probability_buffer;
  const int64_t token = args.sequence_offsets[first];
  const bool masked = args.key_mask != nullptr;
  const auto primitives = attention_primitives({n, length, heads, head_size, dtype, masked});

  score_buffer.resize(static_cast<size_t>(n * heads * length * length));
  probability_buffer.resize(score_buffer.size() * element);
  dnnl::memory scores({{n, heads, length, length}, dt::f32, tag::abcd}, engine, score_buffer.data());
  dnnl::memory probabilities({{n, heads, length, length}, dnnl_type(dtype), tag::abcd}, engine, probability_buffer.data());
  auto* qkv = const_cast<std::byte*>(static_cast<const std::byte*>(args.qkv)) + token * 3 * hidden * static_cast<int64_t>(element);
  dnnl::memory query(qkv_view(n, length, heads, head_size, dtype, false), engine, qkv);
  dnnl::memory key_t(qkv_view(n, length, heads, head_size, dtype, true), engine, qkv + hidden * element);
  dnnl::memory value(qkv_view(n, length, heads, head_size, dtype, false), engine, qkv + 2 * hidden * element);
  dnnl::memory context(context_view(n, length, heads, head_size, dtype), engine,
                       static_cast<std::byte*>(args.context.data) + token * hidden * static_cast<int64_t>(element));

  std::unordered_map<int, dnnl::memory> score_args = {{DNNL_ARG_SRC, query}, {DNNL_ARG_WEIGHTS, key_t}, {DNNL_ARG_DST, scores}};
  if (masked) {
    mask_buffer.resize(static_cast<size_t>(n * length));
    for (int64_t i = 0; i < n * length; ++i)
      mask_buffer[static_cast<size_t>(i)] = args.key_mask[token + i] != 0 ? 0.0f : kMaskedScore;
    score_args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
        dnnl::memory({{n, 1, 1, length}, dt::f32, tag::abcd}, engine, mask_buffer.data());
  }
  primitives.scores.execute(stream, score_args);
  primitives.softmax.execute(stream, {{DNNL_ARG_SRC, scores}, {DNNL_ARG_DST, probabilities}});
  primitives.context.execute(stream, {{DNNL_ARG_SRC, probabilities}, {DNNL_ARG_WEIGHTS, value}, {DNNL_ARG_DST, context}});
  stream.wait();
}

}  // namespace halfserve::cpu
