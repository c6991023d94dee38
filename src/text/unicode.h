#pragma once

// Unicode steps on text whose every code point remembers the original bytes it came from, so that a tokenizer
// can normalise freely and still report byte spans. All character data comes from utf8proc.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "halfserve/util/utf8.h"

namespace halfserve::unicode {

// A code point of (normalised) text and the bytes [begin, end) of the original text it stands for. A code point
// that several original ones composed into covers all of them; the parts of a decomposed one share its range.
struct TrackedChar {
  char32_t code = 0;
  size_t begin = 0;
  size_t end = 0;
};
using TrackedText = std::vector<TrackedChar>;

// Throws InvalidArgument naming the byte offset of the first ill-formed sequence.
TrackedText decode_utf8(std::string_view utf8);
using halfserve::append_utf8;
std::string encode_utf8(const TrackedChar* first, const TrackedChar* last);

// The Unicode general category, as utf8proc_category_t.
int category(char32_t code);
bool is_mark_nonspacing(char32_t code);  // Mn
bool is_other_category(char32_t code);  // C*: Cc, Cf, Cs, Co and unassigned Cn
bool is_space_separator(char32_t code);  // Zs
// Python's str.isspace(): bidirectional class WS, B or S, or category Zs.
bool is_python_space(char32_t code);

// Python's str.lower() applied to each code point alone: the full lower-case mapping (U+0130 'İ' becomes
// "i̇", two code points), never the context-dependent final sigma.
void append_lowercase(const TrackedChar& c, TrackedText& out);

// Canonical decomposition (NFD) and canonical composition (NFC), as unicodedata.normalize does them.
TrackedText to_nfd(const TrackedText& text);
TrackedText to_nfc(const TrackedText& text);

}  // namespace halfserve::unicode
