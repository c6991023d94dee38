#pragma once

#include <string>
#include <string_view>

namespace halfserve {

// Untrusted JSON (file headers, configs, requests) is checked for nesting depth before it is parsed: the JSON
// library's copies, dumps and comparisons recurse once per level, so a million '[' would overflow the stack.
inline constexpr size_t kMaxJsonDepth = 32;

// Throws Error("WHAT: JSON nested deeper than N levels") when `text` nests more than `max_depth` arrays/objects.
// Brackets inside strings are ignored; the text is otherwise not validated here.
void check_json_depth(std::string_view text, const std::string& what, size_t max_depth = kMaxJsonDepth);

}  // namespace halfserve
