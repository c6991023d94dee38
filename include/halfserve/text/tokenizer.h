#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "halfserve/format/model_metadata.h"

namespace halfserve {

// One WordPiece token and the bytes of the original text it came from.
struct Token {
  std::string text;   // as in the vocabulary: "##" marks a continuation piece; unk_token for an unknown word
  int32_t id = 0;
  size_t begin = 0;   // byte offsets into the text given to tokenize(), end exclusive
  size_t end = 0;
  bool continuation = false;  // a "##" piece: it continues the word of the token before it
};

// BERT's tokenizer with the semantics of Hugging Face's (slow, Python) transformers.BertTokenizer.tokenize():
// special tokens are cut out wherever they occur, then BasicTokenizer (clean-up, CJK ideographs as words, NFC,
// lower case, accent stripping, punctuation split) and greedy longest-match-first WordPiece. Unicode data comes
// from utf8proc; see docs of tokenize() for where that differs from the reference's Python.
//
// Spans: every token covers the original characters its normalised characters came from. Spans never overlap
// and never decrease; a token made only of parts of an original character that an earlier token already covers
// (one Hangul syllable split into several jamo pieces, say) gets an empty span at the end of that earlier token.
class BertTokenizer {
 public:
  // Throws Error when the vocabulary lacks the unknown, [CLS], [SEP] or [PAD] token of `settings`, or the
  // settings are not a WordPiece tokenizer.
  explicit BertTokenizer(const TokenizerSettings& settings);

  // Throws InvalidArgument (naming the byte offset) when `utf8` is not well-formed UTF-8. No [CLS]/[SEP] added.
  // Known difference from the reference: utf8proc's Unicode version (15 for Debian 12) is newer than Python 3.11's
  // (14), so code points first assigned in Unicode 15 are kept here where Python drops them as unassigned.
  std::vector<Token> tokenize(std::string_view utf8) const;

  // The token's id, or unk_id() when the vocabulary does not have it. A token listed twice keeps its last id,
  // like BertTokenizer's vocabulary dict.
  int32_t id_of(std::string_view token) const;
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  size_t vocab_size() const { return settings_.vocab.size(); }
  const TokenizerSettings& settings() const { return settings_; }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  using Vocabulary = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  // The id of a vocabulary entry, or -1.
  int32_t find(std::string_view token) const;
  int32_t require(const std::string& token, const char* role) const;

  TokenizerSettings settings_;
  Vocabulary ids_;
  size_t longest_entry_chars_ = 0;  // no WordPiece candidate longer than this can match
  std::vector<std::u32string> special_tokens_;  // in BertTokenizer's all_special_tokens order
  int32_t unk_id_ = 0, cls_id_ = 0, sep_id_ = 0, pad_id_ = 0;

  friend class TokenizerPass;
};

}  // namespace halfserve
