#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "halfserve/util/error.h"
#include "halfserve/util/half.h"

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

// Distinct (sequences, length) shapes whose primitives are kept; the handles are reference-counted, so a
// reset never invalidates primitives in use.
constexpr size_t kMaxCachedAttentionShapes = 512;

}  // namespace

CpuBackend::AttentionPrimitives CpuBackend::attention_primitives(const AttentionKey& key) {
  std::lock_guard lock(attention_mutex_);
  auto it = attention_cache_.find(key);
  if (it != attention_cache_.end()) return it->second;
  if (attention_cache_.size() >= kMaxCachedAttentionShapes) attention_cache_.clear();
  const auto [sequences, length, heads, head_size] = key;
  const int64_t hidden = heads * head_size;
  const int64_t qkv_row = 3 * hidden;
  auto& engine = cpu_engine();

  // Q and K are read in place from the fused projection: [sequence, position, head, d] viewed as
  // [sequence, head, position, d] through strides, so no transpose pass is needed.
  const dnnl::memory::desc query({sequences, heads, length, head_size}, dt::f32,
                                 dims{length * qkv_row, head_size, qkv_row, 1});
  const dnnl::memory::desc key_t({sequences, heads, head_size, length}, dt::f32,
                                 dims{length * qkv_row, head_size, 1, qkv_row});
  const dnnl::memory::desc scores({sequences, heads, length, length}, dt::f32, tag::abcd);
  const dnnl::memory::desc mask({sequences, 1, 1, length}, dt::f32, tag::abcd);
  dnnl::post_ops score_ops;
  score_ops.append_binary(dnnl::algorithm::binary_add, mask);
  dnnl::primitive_attr score_attr;
  score_attr.set_output_scales(0, {1.0f / std::sqrt(static_cast<float>(head_size))});
  score_attr.set_post_ops(score_ops);
  dnnl::matmul score_primitive(
      dnnl::matmul::primitive_desc(dnnl::matmul::desc(query, key_t, scores), score_attr, engine));

  dnnl::softmax_forward softmax_primitive(dnnl::softmax_forward::primitive_desc(
      dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, scores, 3), engine));

  const dnnl::memory::desc value({sequences, heads, length, head_size}, dt::f32,
                                 dims{length * qkv_row, head_size, qkv_row, 1});
  const dnnl::memory::desc context({sequences, heads, length, head_size}, dt::f32,
                                   dims{length * hidden, head_size, hidden, 1});
  dnnl::matmul context_primitive(dnnl::matmul::primitive_desc(dnnl::matmul::desc(scores, value, context), engine));

  return attention_cache_.emplace(key, AttentionPrimitives{score_primitive, softmax_primitive, context_primitive})
      .first->second;
}

void CpuBackend::attention(const AttentionArgs& args) {
  const TokenBatch& t = args.tokens;
  const int64_t heads = args.num_heads, head_size = args.head_size, length = t.length;
  const int64_t hidden = heads * head_size;
  if (args.context.cols != hidden || args.context.rows != t.batch * length)
    throw Error("attention context has the wrong shape");
  if (t.batch == 0) return;
  const int64_t per_sequence = heads * length * length * static_cast<int64_t>(sizeof(float));
  const int64_t chunk = std::clamp<int64_t>(kScoreBudgetBytes / per_sequence, 1, t.batch);

  // Per-thread scratch, grown once and reused: no allocation per call in steady state.
  thread_local std::vector<float> score_buffer, mask_buffer, context_buffer;
  score_buffer.resize(static_cast<size_t>(chunk * heads * length * length));
  mask_buffer.resize(static_cast<size_t>(chunk * length));
  // oneDNN 2.6 has no f32 x f32 -> bf16 matmul: a bf16 context is computed in f32 and narrowed per chunk.
  const bool narrow = args.context.dtype == DType::bf16;
  if (narrow) context_buffer.resize(static_cast<size_t>(chunk * length * hidden));
  else if (args.context.dtype != DType::f32) throw Error("attention context must be F32 or BF16");

  auto& engine = cpu_engine();
  auto& stream = thread_stream();
  for (int64_t first = 0; first < t.batch; first += chunk) {
    const int64_t count = std::min(chunk, t.batch - first);
    const auto primitives = attention_primitives({count, length, heads, head_size});
    for (int64_t i = 0; i < count * length; ++i)
      mask_buffer[static_cast<size_t>(i)] = t.attention_mask[first * length + i] != 0 ? 0.0f : kMaskedScore;

    float* qkv = const_cast<float*>(args.qkv) + first * length * 3 * hidden;
    dnnl::memory scores({{count, heads, length, length}, dt::f32, tag::abcd}, engine, score_buffer.data());
    dnnl::memory mask({{count, 1, 1, length}, dt::f32, tag::abcd}, engine, mask_buffer.data());
    const dims qkv_strides{length * 3 * hidden, head_size, 3 * hidden, 1};
    dnnl::memory query({{count, heads, length, head_size}, dt::f32, qkv_strides}, engine, qkv);
    dnnl::memory key_t({{count, heads, head_size, length}, dt::f32, dims{length * 3 * hidden, head_size, 1, 3 * hidden}},
                       engine, qkv + hidden);
    dnnl::memory value({{count, heads, length, head_size}, dt::f32, qkv_strides}, engine, qkv + 2 * hidden);
    float* context_f32 = narrow ? context_buffer.data() : static_cast<float*>(args.context.data) + first * length * hidden;
    dnnl::memory context({{count, heads, length, head_size}, dt::f32, dims{length * hidden, head_size, hidden, 1}},
                         engine, context_f32);

    primitives.scores.execute(stream, {{DNNL_ARG_SRC, query}, {DNNL_ARG_WEIGHTS, key_t}, {DNNL_ARG_DST, scores},
                                       {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, mask}});
    primitives.softmax.execute(stream, {{DNNL_ARG_SRC, scores}, {DNNL_ARG_DST, scores}});
    primitives.context.execute(stream, {{DNNL_ARG_SRC, scores}, {DNNL_ARG_WEIGHTS, value}, {DNNL_ARG_DST, context}});
    if (narrow) {
      stream.wait();
      uint16_t* destination = static_cast<uint16_t*>(args.context.data) + first * length * hidden;
      const int64_t elements = count * length * hidden;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < elements; ++i) destination[i] = float_to_bfloat16(context_f32[i]);
    }
  }
  stream.wait();
}

}  // namespace halfserve::cpu
