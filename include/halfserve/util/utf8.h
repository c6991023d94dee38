#pragma once

#include <cstddef>
#include <string>
#include <string_view>

// The one UTF-8 codec of the library (utf8proc underneath): every layer that walks text bytes uses these.
namespace halfserve {

// The code point starting at byte `at` of `text` and its length in bytes; 0, with `codepoint` untouched, for an
// ill-formed or truncated sequence (overlong forms and surrogates included).
size_t decode_utf8(std::string_view text, size_t at, char32_t& codepoint);

// True when `text` is well-formed UTF-8.
bool is_valid_utf8(std::string_view text);

// `text` with every byte that starts no well-formed sequence replaced by U+FFFD.
std::string replace_invalid_utf8(std::string_view text);

void append_utf8(char32_t codepoint, std::string& out);

// Unicode general category P* (Pc, Pd, Ps, Pe, Pi, Pf, Po): the one test of "is this character punctuation".
bool is_punctuation(char32_t codepoint);

}  // namespace halfserve
