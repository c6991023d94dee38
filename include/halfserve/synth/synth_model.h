#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "halfserve/format/frozen_model.h"

namespace halfserve {

// The seed's architecture: 2 layers, hidden 768, 12 heads, FFN 3072, 21128-token vocabulary, 512 positions.
BertConfig seed_architecture();
// The seed's punctuation labels: O ， 。 ？ ！ 、
std::vector<Label> seed_punctuation_labels();

// A vocabulary the project generates itself: BERT's special tokens, printable ASCII, common Chinese and
// English punctuation, "##" continuations of ASCII letters and digits, then CJK ideographs from U+4E00 until
// `size` tokens.
std::vector<std::string> synth_vocabulary(int64_t size);

struct SynthOptions {
  uint64_t seed = 1;
  BertConfig config = seed_architecture();
  std::vector<Label> labels = seed_punctuation_labels();
};

// A model with deterministic random weights (BERT's initialiser: normal with std 0.02; the head with a wider
// spread so its labels are not near-ties). The same seed gives the same bytes on every machine.
FrozenModel synthesize_model(const SynthOptions& options);

}  // namespace halfserve
