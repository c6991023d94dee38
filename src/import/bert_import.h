#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "halfserve/import/model_source.h"
#include "halfserve/import/tf_graph.h"

namespace halfserve {

// Maps a source's tensors onto the frozen file's canonical BERT names (google-research TF names with kernels
// [in, out], or Hugging Face names with or without `bert.`), finds the token head, settles the architecture,
// labels, vocabulary and signatures, and returns a validated model. `companions` are the folders searched for
// config.json, vocab.txt and friends; `graph` (may be null) supplies TF signatures to carry over.
FrozenModel import_bert(TensorSource& source, const std::string& path, const std::vector<std::filesystem::path>& companions,
                        const ImportOptions& options, const TfGraphSource* graph);

}  // namespace halfserve
