#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/text/punctuator.h"

namespace halfserve::cli {

// Flags shared by the commands that run a model: --precision, --device, --threads.
struct EngineFlags {
  std::string precision;  // "" = the file's own
  std::string device = "cpu";
  int threads = 0;

  void add_to(CLI::App& command);
  EngineOptions options() const;
};

// CLI11 validator accepting fp32 / fp16 / bf16 / int8 (so a bad value is a usage error, exit 2).
CLI::Validator precision_validator();

// --window, --stride and --batch-size of the commands that punctuate.
void add_window_flags(CLI::App& command, PunctuatorOptions& options);

// "fp32,bf16" -> {fp32, bf16}; a bad name is a usage error naming `flag`.
std::vector<Precision> parse_precision_list(const std::string& text, const std::string& flag);

// "1,8,16" -> {1, 8, 16}; every value must be positive.
std::vector<int64_t> parse_positive_list(const std::string& text, const std::string& flag);

}  // namespace halfserve::cli
