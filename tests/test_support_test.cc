// The test suite's own rule for missing prerequisites: a skip for a user, a failure under CI.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "test_support.h"

namespace halfserve::testing {
namespace {

// Sets (or, with nullopt, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value->c_str(), 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

void lacks_a_prerequisite() { HALFSERVE_MISSING_PREREQUISITE("the frobnicator is not installed"); }

TEST(TestSupport, StrictUnderCiOrHalfserveStrict) {
  {
    ScopedEnv ci("CI", std::nullopt), strict("HALFSERVE_STRICT", std::nullopt);
    EXPECT_FALSE(strict_prerequisites());
  }
  {
    ScopedEnv ci("CI", "true"), strict("HALFSERVE_STRICT", std::nullopt);
    EXPECT_TRUE(strict_prerequisites());
  }
  {
    ScopedEnv ci("CI", "false"), strict("HALFSERVE_STRICT", "1");
    EXPECT_TRUE(strict_prerequisites());
  }
  {
    ScopedEnv ci("CI", "false"), strict("HALFSERVE_STRICT", "0");
    EXPECT_FALSE(strict_prerequisites());
  }
}

TEST(TestSupport, AMissingPrerequisiteFailsInStrictMode) {
  ScopedEnv strict("HALFSERVE_STRICT", "1");
  EXPECT_FATAL_FAILURE(lacks_a_prerequisite(), "the frobnicator is not installed (a missing prerequisite is a failure");
}

}  // namespace
}  // namespace halfserve::testing
