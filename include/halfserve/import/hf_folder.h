#pragma once

#include <string>

#include "halfserve/format/frozen_model.h"

namespace halfserve {

// Imports a Hugging Face BERT folder: config.json, vocab.txt, model.safetensors (and tokenizer_config.json
// when present). `path` may also name one .safetensors weights file; the rest is read from its folder. Tensor names may carry the `bert.` prefix or not; BertForTokenClassification's
// `classifier.*` head becomes the token head, with labels from `id2label`. Pooler and pre-training heads are
// dropped (noted in the provenance). Weights keep their source dtype; cast_model() sets the precision.
FrozenModel import_hf_folder(const std::string& folder);

// True when `folder` looks like a Hugging Face model folder (has config.json and model.safetensors).
bool is_hf_folder(const std::string& folder);
// True when a plain safetensors weights file (no halfserve metadata) has config.json beside it.
bool is_hf_weights_file(const std::string& path);

}  // namespace halfserve
