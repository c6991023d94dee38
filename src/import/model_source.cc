#include "halfserve/import/model_source.h"

#include <filesystem>
#include <fstream>

#include "halfserve/import/hf_folder.h"
#include "halfserve/util/error.h"

namespace halfserve {

namespace fs = std::filesystem;

SourceFormat parse_source_format(std::string_view name) {
  if (name == "auto") return SourceFormat::automatic;
  if (name == "hf") return SourceFormat::hf;
  if (name == "frozen") return SourceFormat::frozen;
  throw InvalidArgument("unknown source format '" + std::string(name) + "' (expected auto, hf or frozen)");
}

std::string_view source_format_name(SourceFormat format) {
  switch (format) {
    case SourceFormat::automatic: return "auto";
    case SourceFormat::hf: return "hf";
    case SourceFormat::frozen: return "frozen";
  }
  return "?";
}

SourceFormat detect_source_format(const std::string& path) {
  if (!fs::exists(path)) throw Error(path + ": no such file or folder");
  if (fs::is_directory(path)) {
    if (is_hf_folder(path)) return SourceFormat::hf;
    throw Error(path + ": folder is not a recognised model (a Hugging Face folder needs config.json and model.safetensors)");
  }
  // A safetensors file starts with a little-endian header length followed by '{'.
  std::ifstream in(path, std::ios::binary);
  char head[9] = {};
  in.read(head, sizeof head);
  if (in.gcount() == sizeof head && head[8] == '{') return is_hf_weights_file(path) ? SourceFormat::hf : SourceFormat::frozen;
  throw Error(path + ": unrecognised model file (expected a halfserve frozen .safetensors file, a Hugging Face folder or its .safetensors weights)");
}

FrozenModel import_model(const std::string& path, SourceFormat format) {
  if (format == SourceFormat::automatic) format = detect_source_format(path);
  switch (format) {
    case SourceFormat::hf: return import_hf_folder(path);
    case SourceFormat::frozen: return load_frozen_model(path);
    case SourceFormat::automatic: break;
  }
  throw Error(path + ": cannot import");
}

}  // namespace halfserve
