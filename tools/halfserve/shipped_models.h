#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

namespace halfserve::cli {

// The punctuation models shipped with halfserve (models/ in the source tree): punct-LANGUAGE-int8.safetensors.
// They are found relative to the running binary, never through a path fixed at build time, so a build tree, an
// installed prefix and a copied bundle all work:
//   BINARY_DIR/models/                 (the build tree copies them beside the binary)
//   BINARY_DIR/../share/halfserve/models/  (`cmake --install` puts them there)
// Throws an Error naming every place looked at when none holds the file.
std::filesystem::path shipped_model(const std::string& language);

// The languages shipped: "zh" (the default) and "en".
const char* shipped_languages();

// --model FILE, or --language zh|en for a shipped model (zh when neither is given).
struct ModelChoice {
  std::string file;
  std::string language;
  void add_to(CLI::App& command);
  std::string path() const;  // the file, or the shipped model's path
};

}  // namespace halfserve::cli
