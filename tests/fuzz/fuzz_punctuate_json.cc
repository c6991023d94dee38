// The REST :punctuate body: texts, window and stride bounds, options; then tokenizing, windowing and rendering the
// reply with a stand-in model.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.h"
#include "serve/rest_punctuate.h"
#include "serving_model.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  fuzz::expect_only_clean_errors([&] {
    rest::punctuate_json(body, fuzz::serving_model().metadata, fuzz::serving_tokenizer(), fuzz::label_by_id);
  });
  return 0;
}
