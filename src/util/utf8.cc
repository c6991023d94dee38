#include "halfserve/util/utf8.h"

#include <utf8proc.h>

namespace halfserve {

size_t decode_utf8(std::string_view text, size_t at, char32_t& codepoint) {
  utf8proc_int32_t value = 0;
  const auto length = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data()) + at,
                                       static_cast<utf8proc_ssize_t>(text.size() - at), &value);
  if (length <= 0) return 0;
  codepoint = static_cast<char32_t>(value);
  return static_cast<size_t>(length);
}

bool is_valid_utf8(std::string_view text) {
  char32_t codepoint = 0;
  for (size_t at = 0; at < text.size();) {
    const size_t length = decode_utf8(text, at, codepoint);
    if (length == 0) return false;
    at += length;
  }
  return true;
}

std::string replace_invalid_utf8(std::string_view text) {
  std::string result;
  result.reserve(text.size());
  for (size_t at = 0; at < text.size();) {
    char32_t codepoint = 0;
    const size_t length = decode_utf8(text, at, codepoint);
    if (length == 0) {
      result.append("\xEF\xBF\xBD");
      ++at;
    } else {
      result.append(text.substr(at, length));
      at += length;
    }
  }
  return result;
}

void append_utf8(char32_t codepoint, std::string& out) {
  utf8proc_uint8_t bytes[4];
  const utf8proc_ssize_t length = utf8proc_encode_char(static_cast<utf8proc_int32_t>(codepoint), bytes);
  out.append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(length));
}

bool is_punctuation(char32_t codepoint) {
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(codepoint));
  return category >= UTF8PROC_CATEGORY_PC && category <= UTF8PROC_CATEGORY_PO;
}

}  // namespace halfserve
