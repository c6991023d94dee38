#pragma once
// What every fuzz target shares: a private scratch folder for inputs that readers take as files, and the rule
// the fuzzers check beyond ASan/UBSan's: bad input may only fail with halfserve's own Error, whose message names
// the problem. Any other exception (std::out_of_range from .at(), std::invalid_argument from stoll, bad_alloc
// from an unchecked size, ...) is an opaque answer to a user and is reported as a crash.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <typeinfo>

#include "halfserve/util/error.h"

namespace halfserve::fuzz {

namespace fs = std::filesystem;

// A folder of this process's own under $TMPDIR (or /tmp); the fuzzer writes each input there.
inline const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    fs::path path = fs::path(base != nullptr && *base != '\0' ? base : "/tmp") /
                    ("halfserve-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(path);
    return path;
  }();
  return dir;
}

inline void write_file(const fs::path& path, std::span<const uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Copies the files of $HALFSERVE_FUZZ_COMPANIONS (a model's config.json, vocab.txt, variables/ ...) into `dir`
// once, so an importer fed a fuzzed model file finds the rest of a real model beside it.
inline void add_companions(const fs::path& dir) {
  const char* companions = std::getenv("HALFSERVE_FUZZ_COMPANIONS");
  if (companions == nullptr || *companions == '\0') return;
  fs::copy(companions, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

// A folder `name` under the scratch folder, with the companion files in it (made once per process).
inline fs::path model_dir(const std::string& name) {
  const fs::path path = scratch_dir() / name;
  fs::create_directories(path);
  add_companions(path);
  return path;
}

// Runs `body` on one input; halfserve::Error is the expected answer to bad input, anything else aborts.
template <typename Body>
void expect_only_clean_errors(Body&& body) {
  try {
    body();
  } catch (const Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: input answered with %s (not a halfserve::Error): %s\n", typeid(e).name(), e.what());
    std::abort();
  }
}

}  // namespace halfserve::fuzz
