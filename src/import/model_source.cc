#include "halfserve/import/model_source.h"

#include <array>
#include <filesystem>
#include <fstream>

#include "halfserve/format/model_metadata.h"
#include "halfserve/format/safetensors.h"
#include "halfserve/import/safetensors_source.h"
#include "halfserve/import/tf_checkpoint.h"
#include "halfserve/import/tf_graph.h"
#include "halfserve/import/torch_checkpoint.h"
#include "halfserve/util/error.h"
#include "import/bert_import.h"

namespace halfserve {

namespace fs = std::filesystem;

namespace {

constexpr std::array<std::pair<SourceFormat, std::string_view>, 7> kFormats{{
    {SourceFormat::automatic, "auto"},
    {SourceFormat::hf, "hf"},
    {SourceFormat::torch, "torch"},
    {SourceFormat::tf_checkpoint, "tf-checkpoint"},
    {SourceFormat::saved_model, "saved-model"},
    {SourceFormat::graphdef, "graphdef"},
    {SourceFormat::frozen, "frozen"},
}};

bool starts_with_bytes(const std::string& path, std::string_view magic) {
  std::ifstream in(path, std::ios::binary);
  std::string head(magic.size(), '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  return in.gcount() == static_cast<std::streamsize>(magic.size()) && head == magic;
}

// A safetensors file starts with its header length and then '{'.
bool looks_like_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[9] = {};
  in.read(head, sizeof head);
  return in.gcount() == sizeof head && head[8] == '{';
}

bool has_halfserve_metadata(const std::string& path) {
  try {
    return read_safetensors(path).metadata.count(kModelFormatVersionKey) != 0;
  } catch (const Error&) {
    return false;
  }
}

fs::path parent_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

// The weights file inside a Hugging Face folder.
std::string hf_weights(const std::string& path) {
  return fs::is_directory(path) ? (fs::path(path) / "model.safetensors").string() : path;
}
std::string torch_weights(const std::string& path) {
  return fs::is_directory(path) ? (fs::path(path) / "pytorch_model.bin").string() : path;
}

std::vector<fs::path> companion_folders(const std::string& path, SourceFormat format) {
  const fs::path folder = fs::is_directory(path) ? fs::path(path) : parent_of(path);
  if (format == SourceFormat::saved_model) return {folder, folder / "assets", folder.parent_path()};
  return {folder};
}

}  // namespace

SourceFormat parse_source_format(std::string_view name) {
  for (const auto& [format, format_name] : kFormats)
    if (format_name == name) return format;
  throw InvalidArgument("unknown source format '" + std::string(name) +
                        "' (expected auto, hf, torch, tf-checkpoint, saved-model, graphdef or frozen)");
}

std::string_view source_format_name(SourceFormat format) {
  for (const auto& [candidate, name] : kFormats)
    if (candidate == format) return name;
  return "?";
}

SourceFormat detect_source_format(const std::string& path) {
  if (is_saved_model(path)) return SourceFormat::saved_model;
  if (fs::is_directory(path)) {
    const fs::path folder(path);
    if (fs::exists(folder / "model.safetensors") && fs::exists(folder / "config.json")) return SourceFormat::hf;
    if (fs::exists(folder / "pytorch_model.bin")) return SourceFormat::torch;
    if (is_tf_checkpoint(path)) return SourceFormat::tf_checkpoint;
    throw Error(path + ": folder holds no recognised model (looked for saved_model.pb, config.json + model.safetensors, "
                "pytorch_model.bin, a TF checkpoint *.index)");
  }
  if (!fs::exists(path) && is_tf_checkpoint(path)) return SourceFormat::tf_checkpoint;  // a checkpoint prefix
  if (!fs::is_regular_file(path)) throw Error(path + ": no such file or folder");
  if (looks_like_safetensors(path)) return has_halfserve_metadata(path) ? SourceFormat::frozen : SourceFormat::hf;
  if (starts_with_bytes(path, "PK\x03\x04")) {
    if (is_torch_checkpoint(path)) return SourceFormat::torch;
    throw Error(path + ": a zip file, but not a PyTorch checkpoint (no data.pkl)");
  }
  if (is_tf_checkpoint(path)) return SourceFormat::tf_checkpoint;
  if (is_graphdef(path)) return SourceFormat::graphdef;
  throw Error(path + ": unrecognised model file (not safetensors, a PyTorch zip, a TF checkpoint, a SavedModel or a GraphDef)");
}

std::unique_ptr<TensorSource> open_tensor_source(const std::string& path, SourceFormat format, const std::string& tags) {
  if (format == SourceFormat::automatic) format = detect_source_format(path);
  switch (format) {
    case SourceFormat::hf:
    case SourceFormat::frozen: return open_safetensors_source(hf_weights(path));
    case SourceFormat::torch: return open_torch_checkpoint(torch_weights(path));
    case SourceFormat::tf_checkpoint: return open_tf_checkpoint(path);
    case SourceFormat::saved_model: return open_saved_model(path, tags);
    case SourceFormat::graphdef: return open_graphdef(path);
    case SourceFormat::automatic: break;
  }
  throw Error(path + ": cannot open");
}

FrozenModel import_model(const std::string& path, const ImportOptions& options) {
  const SourceFormat format = options.format == SourceFormat::automatic ? detect_source_format(path) : options.format;
  if (format == SourceFormat::frozen) return load_frozen_model(path);
  const auto source = open_tensor_source(path, format, options.saved_model_tags);
  const auto* graph = dynamic_cast<const TfGraphSource*>(source.get());
  return import_bert(*source, path, companion_folders(path, format), options, graph);
}

}  // namespace halfserve
