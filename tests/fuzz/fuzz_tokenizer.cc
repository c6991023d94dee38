// The BERT tokenizer on arbitrary bytes: UTF-8 validation, normalisation, CJK splitting and WordPiece. Every
// token's byte span must lie inside the text and in order, which the punctuator relies on.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "fuzz_support.h"
#include "serving_model.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_only_clean_errors([&] {
    size_t previous_begin = 0;
    for (const Token& token : fuzz::serving_tokenizer()->tokenize(text)) {
      if (token.begin > token.end || token.end > size || token.begin < previous_begin) {
        std::fprintf(stderr, "fuzz: token span [%zu, %zu) out of order or outside %zu bytes\n", token.begin, token.end, size);
        std::abort();
      }
      previous_begin = token.begin;
    }
  });
  return 0;
}
