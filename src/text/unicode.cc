#include "text/unicode.h"

#include <utf8proc.h>

#include <algorithm>
#include <optional>

#include "halfserve/util/error.h"

namespace halfserve::unicode {

namespace {

const utf8proc_property_t& properties(char32_t code) {
  return *utf8proc_get_property(static_cast<utf8proc_int32_t>(code));
}

int combining_class(char32_t code) { return code < 0x300 ? 0 : properties(code).combining_class; }

// No code point below U+00C0 has a canonical decomposition, and none below U+0300 is the second half of a
// canonical composition: most text never reaches utf8proc's tables.
constexpr char32_t kFirstDecomposable = 0xC0;
constexpr char32_t kFirstCompositionSecond = 0x300;

void append_canonical_decomposition(const TrackedChar& c, TrackedText& out) {
  if (c.code < kFirstDecomposable) {
    out.push_back(c);
    return;
  }
  utf8proc_int32_t parts[8];
  int boundclass = 0;
  // Canonical decompositions are at most 4 code points long (Unicode's stability policy caps them well below 8).
  const utf8proc_ssize_t count = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c.code), parts, 8,
                                                         UTF8PROC_DECOMPOSE, &boundclass);
  if (count <= 0 || count > 8) throw Error("utf8proc could not decompose U+" + std::to_string(c.code));
  for (utf8proc_ssize_t i = 0; i < count; ++i) out.push_back({static_cast<char32_t>(parts[i]), c.begin, c.end});
}

// Canonical ordering: within each run of non-starters, a stable sort by combining class.
void reorder_marks(TrackedText& text) {
  size_t i = 0;
  while (i < text.size()) {
    if (combining_class(text[i].code) == 0) {
      ++i;
      continue;
    }
    size_t run_end = i;
    while (run_end < text.size() && combining_class(text[run_end].code) != 0) ++run_end;
    std::stable_sort(text.begin() + static_cast<std::ptrdiff_t>(i), text.begin() + static_cast<std::ptrdiff_t>(run_end),
                     [](const TrackedChar& a, const TrackedChar& b) {
                       return combining_class(a.code) < combining_class(b.code);
                     });
    i = run_end;
  }
}

// The primary composite of `starter` followed by `second`, if there is one (composition exclusions and Hangul
// included). utf8proc has no pairwise lookup in its API, so this normalises the two-code-point string.
std::optional<char32_t> compose_pair(char32_t starter, char32_t second) {
  utf8proc_int32_t pair[2] = {static_cast<utf8proc_int32_t>(starter), static_cast<utf8proc_int32_t>(second)};
  if (utf8proc_normalize_utf32(pair, 2, static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_STABLE)) == 1)
    return static_cast<char32_t>(pair[0]);
  return std::nullopt;
}

}  // namespace

TrackedText decode_utf8(std::string_view utf8) {
  TrackedText text;
  text.reserve(utf8.size());
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(utf8.data());
  const auto size = static_cast<utf8proc_ssize_t>(utf8.size());
  utf8proc_ssize_t offset = 0;
  while (offset < size) {
    if (bytes[offset] < 0x80) {
      text.push_back({bytes[offset], static_cast<size_t>(offset), static_cast<size_t>(offset) + 1});
      ++offset;
      continue;
    }
    char32_t code = 0;
    const auto length = static_cast<utf8proc_ssize_t>(halfserve::decode_utf8(utf8, static_cast<size_t>(offset), code));
    if (length == 0) throw InvalidArgument("invalid UTF-8 at byte " + std::to_string(offset));
    text.push_back({code, static_cast<size_t>(offset), static_cast<size_t>(offset + length)});
    offset += length;
  }
  return text;
}

std::string encode_utf8(const TrackedChar* first, const TrackedChar* last) {
  std::string out;
  out.reserve(static_cast<size_t>(last - first));
  for (; first != last; ++first) append_utf8(first->code, out);
  return out;
}

int category(char32_t code) { return utf8proc_category(static_cast<utf8proc_int32_t>(code)); }

bool is_mark_nonspacing(char32_t code) { return code >= 0x300 && category(code) == UTF8PROC_CATEGORY_MN; }

bool is_other_category(char32_t code) {
  const int c = category(code);
  return c == UTF8PROC_CATEGORY_CN || (c >= UTF8PROC_CATEGORY_CC && c <= UTF8PROC_CATEGORY_CO);
}

bool is_space_separator(char32_t code) { return category(code) == UTF8PROC_CATEGORY_ZS; }

bool is_python_space(char32_t code) {
  if (code == ' ') return true;
  const utf8proc_property_t& p = properties(code);
  return p.category == UTF8PROC_CATEGORY_ZS || p.bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         p.bidi_class == UTF8PROC_BIDI_CLASS_B || p.bidi_class == UTF8PROC_BIDI_CLASS_S;
}

void append_lowercase(const TrackedChar& c, TrackedText& out) {
  if (c.code < 0x80) {
    out.push_back({c.code >= 'A' && c.code <= 'Z' ? c.code + ('a' - 'A') : c.code, c.begin, c.end});
    return;
  }
  // utf8proc has only the simple (one-to-one) mappings; U+0130 is the one code point whose unconditional full
  // lower-case mapping (SpecialCasing.txt), which Python uses, is longer.
  if (c.code == 0x130) {
    out.push_back({U'i', c.begin, c.end});
    out.push_back({0x307, c.begin, c.end});
    return;
  }
  out.push_back({static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c.code))), c.begin, c.end});
}

TrackedText to_nfd(const TrackedText& text) {
  TrackedText out;
  out.reserve(text.size());
  for (const TrackedChar& c : text) append_canonical_decomposition(c, out);
  reorder_marks(out);
  return out;
}

// The canonical composition algorithm of UAX #15 over the NFD form: a character composes with the last starter
// unless a character in between has a combining class of zero or of at least its own (it is "blocked").
TrackedText to_nfc(const TrackedText& text) {
  const bool maybe_composable = std::any_of(text.begin(), text.end(), [](const TrackedChar& c) {
    return c.code >= kFirstDecomposable;
  });
  if (!maybe_composable) return text;
  const TrackedText decomposed = to_nfd(text);
  TrackedText out;
  out.reserve(decomposed.size());
  std::optional<size_t> starter;
  int highest_class_since_starter = -1;
  for (const TrackedChar& c : decomposed) {
    const int klass = combining_class(c.code);
    if (starter && klass > highest_class_since_starter && c.code >= kFirstCompositionSecond) {
      if (const auto composite = compose_pair(out[*starter].code, c.code)) {
        TrackedChar& target = out[*starter];
        target.code = *composite;
        target.begin = std::min(target.begin, c.begin);
        target.end = std::max(target.end, c.end);
        continue;
      }
    }
    out.push_back(c);
    if (klass == 0) {
      starter = out.size() - 1;
      highest_class_since_starter = -1;
    } else {
      highest_class_since_starter = std::max(highest_class_since_starter, klass);
    }
  }
  return out;
}

}  // namespace halfserve::unicode
