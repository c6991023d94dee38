#include "test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <fstream>
#include <random>
#include <sstream>

#include "halfserve/synth/synth_model.h"

namespace halfserve::testing {

namespace fs = std::filesystem;

std::optional<fs::path> fixtures_dir() {
  if (const char* env = std::getenv("HALFSERVE_FIXTURES"); env != nullptr && fs::is_directory(env)) return fs::path(env);
  const fs::path beside = fs::path(HALFSERVE_SOURCE_DIR) / ".." / "shared" / "fixtures";
  if (fs::is_directory(beside)) return fs::canonical(beside);
  return std::nullopt;
}

bool strict_prerequisites() {
  const auto is = [](const char* name, std::initializer_list<std::string_view> values) {
    const char* value = std::getenv(name);
    return value != nullptr && std::find(values.begin(), values.end(), std::string_view(value)) != values.end();
  };
  return is("HALFSERVE_STRICT", {"1"}) || is("CI", {"true", "1"});
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::json::parse(in);
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

::testing::AssertionResult Contains(const std::string& text, const std::string& fragment) {
  if (text.find(fragment) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << fragment << "\" not found in: " << text;
}

TempDir::TempDir() {
  std::random_device entropy;
  path_ = fs::temp_directory_path() / ("halfserve-test-" + std::to_string(::getpid()) + "-" + std::to_string(entropy()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

FrozenModel tiny_model(uint64_t seed, int64_t vocab_size, int64_t layers) {
  SynthOptions options;
  options.seed = seed;
  options.config.num_layers = layers;
  options.config.hidden_size = 32;
  options.config.num_heads = 4;
  options.config.intermediate_size = 64;
  options.config.vocab_size = vocab_size;
  options.config.max_positions = 64;
  return synthesize_model(options);
}

CommandResult run_cli(const std::string& args, const std::string& stdin_text) {
  return run_binary(HALFSERVE_CLI_PATH, args, stdin_text);
}

CommandResult run_binary(const std::string& binary, const std::string& args, const std::string& stdin_text) {
  TempDir dir;
  const fs::path in = dir / "stdin", out = dir / "stdout", err = dir / "stderr";
  std::ofstream(in) << stdin_text;
  const std::string command = "'" + binary + "' " + args + " < '" + in.string() + "' > '" +
                              out.string() + "' 2> '" + err.string() + "'";
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::stringstream out_text, err_text;
  out_text << std::ifstream(out).rdbuf();
  err_text << std::ifstream(err).rdbuf();
  result.out = out_text.str();
  result.err = err_text.str();
  return result;
}

InputBatch random_batch(const BertConfig& config, int64_t batch, int64_t length, uint32_t seed) {
  std::mt19937 generator(seed);
  InputBatch in;
  in.batch = batch;
  in.length = length;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t real = std::uniform_int_distribution<int64_t>(1, length)(generator);
    for (int64_t t = 0; t < length; ++t) {
      in.input_ids.push_back(std::uniform_int_distribution<int32_t>(0, static_cast<int32_t>(config.vocab_size - 1))(generator));
      in.attention_mask.push_back(t < real ? 1 : 0);
      in.token_type_ids.push_back(std::uniform_int_distribution<int32_t>(0, 1)(generator));
    }
  }
  return in;
}

}  // namespace halfserve::testing
