#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "halfserve/format/frozen_model.h"
#include "halfserve/import/tensor_source.h"

namespace halfserve {

// Source formats `halfserve convert` reads. `automatic` decides by content, not by file name.
enum class SourceFormat : uint8_t { automatic, hf, torch, tf_checkpoint, saved_model, graphdef, frozen };

SourceFormat parse_source_format(std::string_view name);  // "auto", "hf", "torch", "tf-checkpoint", ...
std::string_view source_format_name(SourceFormat format);
// Throws Error saying what was found when nothing matches.
SourceFormat detect_source_format(const std::string& path);

struct ImportOptions {
  SourceFormat format = SourceFormat::automatic;
  std::string head_scope;   // TF scope of the token head ("whichPun"); empty: classifier.* or the one candidate
  std::string labels_file;  // one label per line: NAME or NAME<TAB>MARK
  std::string vocab_file;   // default: vocab.txt beside the source
  std::string config_file;  // default: config.json or bert_config.json beside the source
  std::string saved_model_tags = "serve";
  std::optional<Activation> activation;  // default: tanh GELU for TF names, hidden_act for Hugging Face names
  std::function<void(const std::string&)> progress;  // a line now and then while reading large models
};

// Opens any supported source for reading tensors (frozen files are read as plain safetensors).
std::unique_ptr<TensorSource> open_tensor_source(const std::string& path, SourceFormat format,
                                                 const std::string& saved_model_tags = "serve");

// Imports any supported source into a model under canonical names, weights in their source precision (kernels
// transposed to [out, in] as f32). What was inferred, dropped or assumed is listed in provenance.notes.
FrozenModel import_model(const std::string& path, const ImportOptions& options = {});

}  // namespace halfserve
