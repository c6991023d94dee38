#include "shipped_models.h"

#include <system_error>
#include <vector>

#include "halfserve/util/error.h"

namespace halfserve::cli {

namespace fs = std::filesystem;

namespace {

fs::path binary_directory() {
  std::error_code error;
  const fs::path binary = fs::read_symlink("/proc/self/exe", error);
  if (error) throw Error("cannot find the halfserve binary's folder (/proc/self/exe: " + error.message() + ")");
  return binary.parent_path();
}

}  // namespace

const char* shipped_languages() { return "zh, en"; }

fs::path shipped_model(const std::string& language) {
  if (language != "zh" && language != "en")
    throw InvalidArgument("no shipped model for language '" + language + "' (shipped: " + shipped_languages() + ")");
  const std::string file = "punct-" + language + "-int8.safetensors";
  const fs::path binary_dir = binary_directory();
  const std::vector<fs::path> candidates = {binary_dir / "models" / file,
                                            binary_dir.parent_path() / "share" / "halfserve" / "models" / file};
  std::string looked;
  for (const fs::path& candidate : candidates) {
    std::error_code error;
    if (fs::is_regular_file(candidate, error)) return candidate;
    looked += (looked.empty() ? "" : ", ") + candidate.string();
  }
  throw Error("the shipped " + language + " model is not installed (looked for " + looked +
              "); pass --model FILE");
}

void ModelChoice::add_to(CLI::App& command) {
  auto* model = command.add_option("--model", file, "Frozen .safetensors file (default: the shipped model of --language)")
                    ->check([](const std::string& value) { return value.empty() ? "--model names no file" : ""; });
  command.add_option("--language", language, "Use the shipped punctuation model of this language: zh (default) or en")
      ->check(CLI::IsMember({"zh", "en"}))
      ->excludes(model);
}

std::string ModelChoice::path() const {
  if (!file.empty()) return file;
  return shipped_model(language.empty() ? "zh" : language).string();
}

}  // namespace halfserve::cli
