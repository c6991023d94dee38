#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "halfserve/format/model_metadata.h"

// The companion files of a model source: config.json / bert_config.json, vocab.txt, tokenizer_config.json and
// a labels file, found beside the source or named by the user.
namespace halfserve {

// Architecture fields as a config file states them; unset where the file is silent (or there is no file).
struct StatedConfig {
  std::optional<int64_t> num_layers, hidden_size, num_heads, intermediate_size, vocab_size, max_positions,
      type_vocab_size;
  std::optional<std::string> hidden_act;
  std::optional<float> layer_norm_eps;
  std::vector<std::string> id2label;  // ordered by id; empty when absent
  std::string path;                   // "" when no config file was found
};

// Reads a Hugging Face config.json or a google-research bert_config.json. Throws Error naming the file and key.
StatedConfig read_stated_config(const std::filesystem::path& path);

// The first of `names` that exists in any of `folders`.
std::optional<std::filesystem::path> find_beside(const std::vector<std::filesystem::path>& folders,
                                                 const std::vector<std::string>& names);

// Labels from a labels file: one per line, "NAME" or "NAME<TAB>MARK" (the mark defaults as for id2label).
std::vector<Label> read_labels_file(const std::string& path);

// do_lower_case and special tokens from a tokenizer_config.json (Hugging Face), when present.
void apply_tokenizer_config(const std::filesystem::path& path, TokenizerSettings& tokenizer);

}  // namespace halfserve
