// TF Serving's REST predict body ("instances" and "inputs" forms) against a model's signature: the JSON budget,
// shapes, id ranges and masks.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.h"
#include "halfserve/serve/predict_json.h"
#include "serving_model.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  fuzz::expect_only_clean_errors([&] { parse_predict_request(body, fuzz::serving_model().metadata); });
  return 0;
}
