#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "halfserve/text/punctuator.h"

// The :punctuate request body, read as a stream (see rest_punctuate.h for its fields).
namespace halfserve::rest {

struct PunctuateRequest {
  std::vector<std::string> texts;
  bool single_text = false;  // "text" (reply "text") rather than "texts"
  PunctuatorOptions options;
  bool labels = false;
  bool probabilities = false;
  bool wants_tokens() const { return labels || probabilities; }
};

// Text one request may hold (about 260 000 tokens of Chinese, the size of predict's largest batch): beyond it a
// single request would hold the model for minutes. Longer documents go in several requests.
inline constexpr size_t kMaxPunctuateTextBytes = size_t{1} << 20;
// Texts one request may list: empty strings cost nothing in the byte budget above but a string each.
inline constexpr size_t kMaxPunctuateTexts = size_t{1} << 16;

// Reads the body event by event and stops at the first problem: malformed JSON or UTF-8, an unknown or repeated
// field, a value of the wrong type, more texts or text bytes than a request may hold. Throws InvalidArgument naming
// it. Nothing but the texts themselves is kept while reading.
PunctuateRequest parse_punctuate_request(std::string_view body);

}  // namespace halfserve::rest
