#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "halfserve/util/error.h"

namespace halfserve {

// Untrusted JSON (file headers, configs, requests) is checked for nesting depth before it is parsed: the JSON
// library's copies, dumps and comparisons recurse once per level, so a million '[' would overflow the stack.
inline constexpr size_t kMaxJsonDepth = 32;

// Throws Error("WHAT: JSON nested deeper than N levels") when `text` nests more than `max_depth` arrays/objects.
// Brackets inside strings are ignored; the text is otherwise not validated here.
void check_json_depth(std::string_view text, const std::string& what, size_t max_depth = kMaxJsonDepth);

// Parses untrusted JSON whose size in values is bounded: the depth is checked first, and parsing stops with
// Error("WHAT: more than N values") as soon as the N+1th value is read, so a body of millions of tiny values never
// becomes a document of millions of nodes (each costs far more memory than its text). Malformed JSON throws the
// JSON library's parse error.
nlohmann::json parse_bounded_json(std::string_view text, const std::string& what, size_t max_values);

// Reads a request body as a stream of JSON events into `reader` (nlohmann's SAX interface), its nesting bounded
// first: the SAX parser's own stack grows with nesting. Too deep a body throws InvalidArgument("request refused:
// ..."); what the reader throws passes through.
template <typename Reader>
void sax_parse_request(std::string_view body, Reader& reader) {
  try {
    check_json_depth(body, "request");
  } catch (const Error& e) {
    throw InvalidArgument(std::string("request refused: ") + e.what());
  }
  nlohmann::json::sax_parse(body, &reader);
}

}  // namespace halfserve
