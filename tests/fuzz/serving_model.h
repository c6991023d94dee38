#pragma once
// A small punctuation model for the request fuzzers: the seed's labels and a generated vocabulary, tiny weights.
// Requests are parsed against its metadata; a stand-in runner answers with labels derived from the ids, so
// windows, decoding and rendering run without the engine's cost.
#include <memory>

#include "halfserve/engine/bert_model.h"
#include "halfserve/synth/synth_model.h"
#include "halfserve/text/punctuator.h"
#include "halfserve/text/tokenizer.h"

namespace halfserve::fuzz {

inline const FrozenModel& serving_model() {
  static const FrozenModel model = [] {
    SynthOptions options;
    options.config.num_layers = 1;
    options.config.hidden_size = 8;
    options.config.num_heads = 2;
    options.config.intermediate_size = 16;
    options.config.max_positions = 64;
    return synthesize_model(options);
  }();
  return model;
}

inline std::shared_ptr<const BertTokenizer> serving_tokenizer() {
  static const auto tokenizer = std::make_shared<const BertTokenizer>(serving_model().metadata.tokenizer);
  return tokenizer;
}

// Logits that make label (id mod labels) win for every token, and the probabilities when asked for, as the engine
// fills them.
inline OutputBatch label_by_id(const InputBatch& in, const OutputSelection& selection) {
  const auto labels = static_cast<int64_t>(serving_model().metadata.labels.size());
  OutputBatch out;
  out.batch = in.batch;
  out.length = in.length;
  out.logits.assign(static_cast<size_t>(in.batch * in.length * labels), 0.0f);
  out.label_ids.resize(in.input_ids.size());
  for (size_t t = 0; t < in.input_ids.size(); ++t) {
    out.label_ids[t] = static_cast<int32_t>(in.input_ids[t] % labels);
    out.logits[t * labels + out.label_ids[t]] = 1.0f;
  }
  if (selection.probabilities) out.probabilities = out.logits;
  return out;
}

}  // namespace halfserve::fuzz
