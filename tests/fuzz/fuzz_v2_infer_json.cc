// The v2 protocol's REST infer body, JSON tensors and the binary tensor extension, against a model's default
// signature. An input starting with digits and a newline gives the Inference-Header-Content-Length header's value
// (the rest is the body); any other input is a body without that header.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "serve/rest_v2.h"
#include "serving_model.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string header_length;
  const size_t newline = input.find('\n');
  if (newline != std::string_view::npos && newline > 0 && newline <= 20 &&
      input.substr(0, newline).find_first_not_of("0123456789") == std::string_view::npos) {
    header_length = std::string(input.substr(0, newline));
    input.remove_prefix(newline + 1);
  }
  const Signature& signature = fuzz::serving_model().metadata.default_signature();
  fuzz::expect_only_clean_errors(
      [&] { v2::infer_input_batch(rest::read_infer_request(input, header_length).inputs, signature); });
  return 0;
}
