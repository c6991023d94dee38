#include "cli_options.h"

#include "halfserve/util/error.h"

namespace halfserve::cli {

CLI::Validator precision_validator() {
  return CLI::IsMember({"fp32", "fp16", "bf16", "int8"});
}

void EngineFlags::add_to(CLI::App& command) {
  command.add_option("--precision", precision, "Compute precision: fp32, fp16, bf16 or int8 (default: the file's)")
      ->check(precision_validator());
  command.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  command.add_option("--threads", threads, "Intra-op threads (default: all cores)")->check(CLI::NonNegativeNumber);
}

EngineOptions EngineFlags::options() const {
  EngineOptions options;
  options.device = parse_device(device);
  if (!precision.empty()) options.precision = parse_precision(precision);
  options.threads = threads;
  return options;
}

void add_window_flags(CLI::App& command, PunctuatorOptions& options) {
  command.add_option("--window", options.window, "Tokens per model call, [CLS]/[SEP] included (default: the model's positions)")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--stride", options.stride, "Tokens between window starts (default: half a window)")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--batch-size", options.batch_size, "Windows per model call")->check(CLI::PositiveNumber);
}

std::vector<Precision> parse_precision_list(const std::string& text, const std::string& flag) {
  std::vector<Precision> precisions;
  for (const auto& item : CLI::detail::split(text, ',')) {
    if (item != "fp32" && item != "fp16" && item != "bf16" && item != "int8")
      throw CLI::ValidationError(flag, "'" + item + "' is not fp32, fp16, bf16 or int8");
    precisions.push_back(parse_precision(item));
  }
  return precisions;
}

std::vector<int64_t> parse_positive_list(const std::string& text, const std::string& flag) {
  std::vector<int64_t> values;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    try {
      size_t used = 0;
      const long long value = std::stoll(item, &used);
      if (used != item.size() || value <= 0) throw std::invalid_argument(item);
      values.push_back(value);
    } catch (const std::exception&) {
      throw CLI::ValidationError(flag, "'" + item + "' is not a positive integer");
    }
    start = end + 1;
  }
  return values;
}

}  // namespace halfserve::cli
