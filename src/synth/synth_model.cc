#include "halfserve/synth/synth_model.h"

#include <cmath>
#include <numbers>
#include <utf8proc.h>

#include "halfserve/format/bert_tensors.h"
#include "halfserve/util/error.h"
#include "halfserve/version.h"

namespace halfserve {

namespace {

// SplitMix64: tiny, fully specified, so the weights are identical across compilers and standard libraries
// (std::normal_distribution is not).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1p-53; }  // in (0, 1)
  // Box–Muller, one value per call.
  float normal(float stddev) {
    const double radius = std::sqrt(-2.0 * std::log(uniform()));
    return static_cast<float>(stddev * radius * std::cos(2.0 * std::numbers::pi * uniform()));
  }

 private:
  uint64_t state_;
};

std::string encode_utf8(int32_t codepoint) {
  utf8proc_uint8_t bytes[4];
  const auto length = utf8proc_encode_char(codepoint, bytes);
  return std::string(reinterpret_cast<const char*>(bytes), static_cast<size_t>(length));
}

uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a of the name, so each tensor's values are independent of order
  for (unsigned char c : name) hash = (hash ^ c) * 0x100000001b3ull;
  return seed * 0x9e3779b97f4a7c15ull ^ hash;
}

}  // namespace

BertConfig seed_architecture() {
  BertConfig c;
  c.num_layers = 2;
  c.hidden_size = 768;
  c.num_heads = 12;
  c.intermediate_size = 3072;
  c.vocab_size = 21128;
  c.max_positions = 512;
  c.type_vocab_size = 2;
  c.activation = Activation::gelu_erf;
  c.layer_norm_eps = 1e-12f;
  return c;
}

std::vector<Label> seed_punctuation_labels() {
  std::vector<Label> labels;
  labels.push_back({"O", "", false});
  for (const char* mark : {"，", "。", "？", "！", "、"}) labels.push_back({mark, mark, false});
  return labels;
}

std::vector<std::string> synth_vocabulary(int64_t size) {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (char c = '!'; c <= '~'; ++c) vocab.emplace_back(1, c);
  for (const char* mark : {"，", "。", "？", "！", "、", "；", "：", "“", "”", "‘", "’", "（", "）", "《", "》", "…", "—"})
    vocab.emplace_back(mark);
  for (char c = 'a'; c <= 'z'; ++c) vocab.push_back(std::string("##") + c);
  for (char c = '0'; c <= '9'; ++c) vocab.push_back(std::string("##") + c);
  for (int32_t codepoint = 0x4e00; static_cast<int64_t>(vocab.size()) < size && codepoint <= 0x9fff; ++codepoint)
    vocab.push_back(encode_utf8(codepoint));
  if (static_cast<int64_t>(vocab.size()) > size) vocab.resize(static_cast<size_t>(size));
  return vocab;
}

FrozenModel synthesize_model(const SynthOptions& options) {
  options.config.validate();
  FrozenModel model;
  ModelMetadata& m = model.metadata;
  m.config = options.config;
  m.labels = options.labels;
  m.tokenizer.vocab = synth_vocabulary(options.config.vocab_size);
  m.signatures = {Signature::default_for(m.has_head())};
  m.provenance.source_format = "synth";
  m.provenance.source = "halfserve synth --seed " + std::to_string(options.seed);
  m.provenance.precision = Precision::fp32;
  m.provenance.tool = std::string("halfserve ") + kVersion;
  m.provenance.created = utc_timestamp();
  if (static_cast<int64_t>(m.tokenizer.vocab.size()) < options.config.vocab_size)
    m.provenance.notes.push_back("generated vocabulary has " + std::to_string(m.tokenizer.vocab.size()) + " tokens");

  for (const auto& expected : expected_bert_tensors(m.config, static_cast<int64_t>(m.labels.size()))) {
    SplitMix64 random(tensor_seed(options.seed, expected.name));
    std::vector<float> values(static_cast<size_t>(shape_numel(expected.shape)));
    const bool is_gamma = expected.role == TensorRole::layer_norm && expected.name.ends_with(".weight");
    const bool is_head = expected.name.rfind("classifier.", 0) == 0;
    for (float& value : values) {
      if (is_gamma)
        value = 1.0f + random.normal(0.05f);
      else if (is_head)
        value = random.normal(expected.role == TensorRole::bias ? 0.1f : 0.5f);
      else
        value = random.normal(0.02f);
    }
    model.tensors.add_float(expected.name, expected.shape, values);
  }
  model.validate();
  return model;
}

}  // namespace halfserve
