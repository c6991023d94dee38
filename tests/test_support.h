#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "halfserve/engine/bert_model.h"
#include "halfserve/format/frozen_model.h"

namespace halfserve::testing {

// ../shared/fixtures beside the project (or $HALFSERVE_FIXTURES); nullopt when absent.
std::optional<std::filesystem::path> fixtures_dir();

// Under CI (CI=true) or HALFSERVE_STRICT=1 a missing prerequisite is a failure, not a skip: a green CI run must
// mean every test ran. Only a missing GPU may still skip there.
bool strict_prerequisites();

// Skips the current test with `message`, or fails it in strict mode. Returns from the calling function.
#define HALFSERVE_MISSING_PREREQUISITE(message)                                                          \
  do {                                                                                                   \
    if (::halfserve::testing::strict_prerequisites())                                                    \
      GTEST_FAIL() << message << " (a missing prerequisite is a failure under CI=true or HALFSERVE_STRICT=1)"; \
    GTEST_SKIP() << message << ": skipped";                                                              \
  } while (false)

// Binds `dir` to the shared fixtures folder, or skips (fails in strict mode) with a clear message.
#define HALFSERVE_REQUIRE_FIXTURES(dir)                                                                     \
  const auto dir##_optional = ::halfserve::testing::fixtures_dir();                                         \
  if (!dir##_optional) HALFSERVE_MISSING_PREREQUISITE("../shared/fixtures not found (set HALFSERVE_FIXTURES)"); \
  const std::filesystem::path dir = *dir##_optional

nlohmann::json read_json(const std::filesystem::path& path);
std::string read_all(const std::filesystem::path& path);

// Passes when `text` contains `fragment`; the failure shows both.
::testing::AssertionResult Contains(const std::string& text, const std::string& fragment);

// A fresh, empty folder under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A small synthetic model (hidden 32, 4 heads, FFN 64, 64 positions, the seed's 6 labels) over the generated
// vocabulary of `vocab_size` tokens (21128 includes CJK ideographs and ## pieces).
FrozenModel tiny_model(uint64_t seed = 3, int64_t vocab_size = 300, int64_t layers = 2);

// `batch` rows of random ids and type ids; each row's real length is uniform over 1..length, padding at the end.
InputBatch random_batch(const BertConfig& config, int64_t batch, int64_t length, uint32_t seed);

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs the halfserve CLI with `args` (shell-quoted by the caller where needed), feeding `stdin_text`.
CommandResult run_cli(const std::string& args, const std::string& stdin_text = "");
// The same with another copy of the binary (to test what it finds relative to itself).
CommandResult run_binary(const std::string& binary, const std::string& args, const std::string& stdin_text = "");

}  // namespace halfserve::testing
