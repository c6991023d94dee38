#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "halfserve/format/model_metadata.h"
#include "halfserve/util/utf8.h"

// Punctuation marks in text: which characters count as marks, removing them, and reading where a reference text
// puts them.
namespace halfserve {

// The characters punctuation restoration removes and restores: every character of the model's label marks plus
// the common Chinese and English sentence marks (，。？！、；：,.?!;:). An ASCII mark between two ASCII letters or
// digits ("3.14", "e.g") belongs to its word and is never treated as a mark.
class MarkSet {
 public:
  explicit MarkSet(const std::vector<Label>& labels);
  bool contains(char32_t codepoint) const { return marks_.count(codepoint) != 0; }
  // Removes every mark (see above). Input must be valid UTF-8.
  std::string strip(std::string_view text) const;
  // True when the character at byte `at` (of length `length`) is an ASCII mark inside a word ("3.14") rather than
  // punctuation; false for anything else there, a space included.
  static bool inside_word(std::string_view text, size_t at, size_t length);

 private:
  std::set<char32_t> marks_;
};

// A reference text read for evaluation: the text without marks, and for each word end (byte offset into the
// clean text) the marks that followed it in the reference.
struct ReferenceMarks {
  std::string clean;
  std::vector<std::pair<size_t, std::string>> marks_after;  // (clean offset, marks), increasing offsets
};
ReferenceMarks read_reference_marks(std::string_view reference, const MarkSet& marks);

}  // namespace halfserve
