#include "halfserve/text/punctuation.h"

#include <cctype>
#include <utf8proc.h>

#include "halfserve/util/utf8.h"

namespace halfserve {

namespace {

constexpr std::u32string_view kCommonMarks = U"，。？！、；：,.?!;:";

bool is_ascii_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

}  // namespace

MarkSet::MarkSet(const std::vector<Label>& labels) : marks_(kCommonMarks.begin(), kCommonMarks.end()) {
  for (const auto& label : labels) {
    for (size_t at = 0; at < label.mark.size();) {
      char32_t codepoint = 0;
      const size_t length = decode_utf8(label.mark, at, codepoint);
      if (length == 0) break;
      // Whitespace in a mark (a "\n" label, say) is layout, not punctuation to strip.
      if (utf8proc_category(static_cast<utf8proc_int32_t>(codepoint)) != UTF8PROC_CATEGORY_ZS && codepoint > U' ')
        marks_.insert(codepoint);
      at += length;
    }
  }
}

bool MarkSet::inside_word(std::string_view text, size_t at, size_t length) {
  // Only an ASCII mark: a space between two words ("hello| world") is not inside either.
  return length == 1 && std::ispunct(static_cast<unsigned char>(text[at])) != 0 && at > 0 && at + 1 < text.size() && is_ascii_alnum(text[at - 1]) && is_ascii_alnum(text[at + 1]);
}

std::string MarkSet::strip(std::string_view text) const {
  std::string clean;
  clean.reserve(text.size());
  for (size_t at = 0; at < text.size();) {
    char32_t codepoint = 0;
    size_t length = decode_utf8(text, at, codepoint);
    if (length == 0) length = 1, codepoint = 0xfffd;  // never reached with valid input; keep the byte
    if (!contains(codepoint) || inside_word(text, at, length)) clean.append(text.substr(at, length));
    at += length;
  }
  return clean;
}

ReferenceMarks read_reference_marks(std::string_view reference, const MarkSet& marks) {
  ReferenceMarks result;
  result.clean.reserve(reference.size());
  size_t word_end = 0;  // clean offset just after the last non-space character
  for (size_t at = 0; at < reference.size();) {
    char32_t codepoint = 0;
    size_t length = decode_utf8(reference, at, codepoint);
    if (length == 0) length = 1, codepoint = 0xfffd;
    const std::string_view bytes = reference.substr(at, length);
    if (marks.contains(codepoint) && !MarkSet::inside_word(reference, at, length)) {
      // A mark belongs to the word before it, even across spaces ("hello , world").
      if (!result.marks_after.empty() && result.marks_after.back().first == word_end)
        result.marks_after.back().second.append(bytes);
      else
        result.marks_after.emplace_back(word_end, std::string(bytes));
    } else {
      result.clean.append(bytes);
      const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(codepoint));
      if (category != UTF8PROC_CATEGORY_ZS && codepoint != U'\t' && codepoint != U'\n' && codepoint != U'\r')
        word_end = result.clean.size();
    }
    at += length;
  }
  return result;
}

}  // namespace halfserve
