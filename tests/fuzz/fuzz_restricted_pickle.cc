// The restricted unpickler that reads a torch checkpoint's data.pkl, straight from the input (no zip around it):
// opcodes, the stack/mark/nesting limits and the allow-list of callables.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_support.h"
#include "import/restricted_pickle.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::expect_only_clean_errors(
      [&] { read_restricted_pickle(std::as_bytes(std::span(data, size)), "fuzz.pkl"); });
  return 0;
}
