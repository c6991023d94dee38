#include "halfserve/text/tokenizer.h"

#include <algorithm>
#include <limits>

#include "halfserve/util/error.h"
#include "text/unicode.h"

// The order of steps, and each step, follow transformers' BertTokenizer.tokenize() (tokenization_utils.py and
// models/bert/tokenization_bert.py, 4.30 to 4.44); the comments name the Python function a step stands for.
namespace halfserve {

namespace {

using unicode::TrackedChar;
using unicode::TrackedText;

constexpr std::string_view kContinuationPrefix = "##";

// BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks, exactly as listed there (Extension G and
// later are not, so they stay inside words).
bool is_cjk_ideograph(char32_t code) {
  return (code >= 0x4E00 && code <= 0x9FFF) || (code >= 0x3400 && code <= 0x4DBF) ||
         (code >= 0x20000 && code <= 0x2A6DF) || (code >= 0x2A700 && code <= 0x2B73F) ||
         (code >= 0x2B740 && code <= 0x2B81F) || (code >= 0x2B820 && code <= 0x2CEAF) ||
         (code >= 0xF900 && code <= 0xFAFF) || (code >= 0x2F800 && code <= 0x2FA1F);
}

// _is_whitespace: tab, newline and carriage return are control characters but count as spaces.
bool is_bert_whitespace(char32_t code) {
  return code == ' ' || code == '\t' || code == '\n' || code == '\r' || (code >= 0x80 && unicode::is_space_separator(code));
}

// _is_control: every category C* (unassigned and private use included), except the three whitespace controls.
bool is_bert_control(char32_t code) {
  if (code == '\t' || code == '\n' || code == '\r') return false;
  return unicode::is_other_category(code);
}

// _is_punctuation: every non-letter, non-digit ASCII character, and category P*.
bool is_bert_punctuation(char32_t code) {
  if ((code >= 33 && code <= 47) || (code >= 58 && code <= 64) || (code >= 91 && code <= 96) ||
      (code >= 123 && code <= 126))
    return true;
  return code >= 0x80 && is_punctuation(code);
}

bool starts_with(const TrackedText& text, size_t at, const std::u32string& pattern) {
  if (pattern.empty() || text.size() - at < pattern.size()) return false;
  for (size_t i = 0; i < pattern.size(); ++i)
    if (text[at + i].code != pattern[i]) return false;
  return true;
}

// PreTrainedTokenizer.tokenize lower-cases the text before anything else, one character at a time, except where
// a special token stands (a regex of the escaped special tokens, tried in order, or any one character).
TrackedText lowercase_outside_special_tokens(const TrackedText& text, const std::vector<std::u32string>& specials) {
  TrackedText out;
  out.reserve(text.size());
  size_t at = 0;
  while (at < text.size()) {
    const auto special = std::find_if(specials.begin(), specials.end(),
                                      [&](const std::u32string& token) { return starts_with(text, at, token); });
    if (special != specials.end()) {
      out.insert(out.end(), text.begin() + static_cast<std::ptrdiff_t>(at),
                 text.begin() + static_cast<std::ptrdiff_t>(at + special->size()));
      at += special->size();
    } else {
      unicode::append_lowercase(text[at], out);
      ++at;
    }
  }
  return out;
}

struct Segment {
  size_t first = 0, last = 0;  // [first, last) in the text
  bool special = false;
};

// tokens_trie.split: cuts the text around every special token, scanning left to right and taking the longest
// token that starts at the earliest position.
std::vector<Segment> split_on_special_tokens(const TrackedText& text, const std::vector<std::u32string>& specials) {
  std::vector<Segment> segments;
  size_t plain_start = 0, at = 0;
  while (at < text.size()) {
    size_t longest = 0;
    for (const auto& token : specials)
      if (token.size() > longest && starts_with(text, at, token)) longest = token.size();
    if (longest == 0) {
      ++at;
      continue;
    }
    if (plain_start < at) segments.push_back({plain_start, at, false});
    segments.push_back({at, at + longest, true});
    at += longest;
    plain_start = at;
  }
  if (plain_start < text.size()) segments.push_back({plain_start, text.size(), false});
  return segments;
}

// _clean_text and _tokenize_chinese_chars: drops NUL, U+FFFD and control characters, turns whitespace into
// spaces and puts spaces around CJK ideographs.
TrackedText clean_and_isolate_ideographs(const TrackedChar* first, const TrackedChar* last, bool isolate_ideographs) {
  TrackedText out;
  out.reserve(static_cast<size_t>(last - first));
  for (const TrackedChar* c = first; c != last; ++c) {
    if (c->code == 0 || c->code == 0xFFFD || is_bert_control(c->code)) continue;
    if (is_bert_whitespace(c->code)) {
      out.push_back({U' ', c->begin, c->end});
    } else if (isolate_ideographs && is_cjk_ideograph(c->code)) {
      out.push_back({U' ', c->begin, c->begin});
      out.push_back(*c);
      out.push_back({U' ', c->end, c->end});
    } else {
      out.push_back(*c);
    }
  }
  return out;
}

// whitespace_tokenize: str.split() with no argument, so Python's whitespace (U+2028 and U+2029 too, which
// _clean_text leaves in place).
std::vector<TrackedText> split_on_whitespace(const TrackedText& text) {
  std::vector<TrackedText> words;
  TrackedText word;
  for (const TrackedChar& c : text) {
    if (unicode::is_python_space(c.code)) {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

TrackedText lowercase(const TrackedText& word) {
  TrackedText out;
  out.reserve(word.size());
  for (const TrackedChar& c : word) unicode::append_lowercase(c, out);
  return out;
}

// _run_strip_accents: NFD, then drop the non-spacing marks.
TrackedText strip_accents(const TrackedText& word) {
  TrackedText out = unicode::to_nfd(word);
  std::erase_if(out, [](const TrackedChar& c) { return unicode::is_mark_nonspacing(c.code); });
  return out;
}

// _run_split_on_punc: every punctuation character is a word of its own.
void split_on_punctuation(const TrackedText& word, std::vector<TrackedText>& out) {
  bool start_new_word = true;
  for (const TrackedChar& c : word) {
    if (is_bert_punctuation(c.code)) {
      out.push_back({c});
      start_new_word = true;
    } else {
      if (start_new_word) out.emplace_back();
      start_new_word = false;
      out.back().push_back(c);
    }
  }
}

std::u32string to_u32string(std::string_view utf8) {
  std::u32string out;
  for (const TrackedChar& c : unicode::decode_utf8(utf8)) out.push_back(c.code);
  return out;
}

// Spans of pieces cut from one original character would overlap: each token starts where the previous ended.
void make_spans_monotone(std::vector<Token>& tokens) {
  size_t previous_end = 0;
  for (Token& token : tokens) {
    token.begin = std::max(token.begin, previous_end);
    token.end = std::max(token.end, token.begin);
    previous_end = token.end;
  }
}

}  // namespace

// What one call of tokenize() needs: the tokenizer's settings and vocabulary, and the tokens so far.
class TokenizerPass {
 public:
  TokenizerPass(const BertTokenizer& tokenizer, std::vector<Token>& tokens) : tokenizer_(tokenizer), tokens_(tokens) {}

  void add_special_token(const TrackedChar* first, const TrackedChar* last) {
    std::string text = unicode::encode_utf8(first, last);
    // A special token missing from the vocabulary would get a new id in BertTokenizer; the engine has no
    // embedding for it either, so it reads as unknown here.
    const int32_t id = tokenizer_.id_of(text);
    tokens_.push_back({std::move(text), id, first->begin, (last - 1)->end, false});
  }

  // BasicTokenizer.tokenize, then WordpieceTokenizer.tokenize on each word.
  void add_plain_text(const TrackedChar* first, const TrackedChar* last) {
    const TokenizerSettings& settings = tokenizer_.settings_;
    const TrackedText cleaned = clean_and_isolate_ideographs(first, last, settings.tokenize_chinese_chars);
    const bool strip = settings.strip_accents.value_or(settings.do_lower_case);
    std::vector<TrackedText> pieces;
    for (TrackedText& word : split_on_whitespace(unicode::to_nfc(cleaned))) {
      if (is_never_split(word)) {
        pieces.push_back(std::move(word));
        continue;
      }
      if (settings.do_lower_case) word = lowercase(word);
      if (strip) word = strip_accents(word);
      // _run_split_on_punc looks at never_split again: stripping accents can make a special token.
      if (is_never_split(word))
        pieces.push_back(std::move(word));
      else
        split_on_punctuation(word, pieces);
    }
    // BasicTokenizer joins its pieces with spaces and splits again, which drops the empty ones.
    for (const TrackedText& piece : pieces)
      for (const TrackedText& word : split_on_whitespace(piece)) add_wordpieces(word);
  }

 private:
  bool is_never_split(const TrackedText& word) const {
    for (const auto& special : tokenizer_.special_tokens_)
      if (word.size() == special.size() && starts_with(word, 0, special)) return true;
    return false;
  }

  void add_unknown(const TrackedText& word) {
    tokens_.push_back({tokenizer_.settings_.unk_token, tokenizer_.unk_id_, word.front().begin, word.back().end, false});
  }

  // Greedy longest-match-first: at each position the longest vocabulary entry ("##"-prefixed after the first),
  // and one unknown token for the whole word when some position has none.
  void add_wordpieces(const TrackedText& word) {
    if (word.size() > static_cast<size_t>(tokenizer_.settings_.max_input_chars_per_word)) return add_unknown(word);
    std::vector<size_t> byte_offsets;  // of each character in `utf8`, and its size at the end
    std::string utf8;
    for (const TrackedChar& c : word) {
      byte_offsets.push_back(utf8.size());
      unicode::append_utf8(c.code, utf8);
    }
    byte_offsets.push_back(utf8.size());

    struct Piece {
      size_t first, last;
      int32_t id;
    };
    std::vector<Piece> found;
    std::string candidate;
    size_t start = 0;
    while (start < word.size()) {
      size_t end = std::min(word.size(), start + tokenizer_.longest_entry_chars_);
      int32_t id = -1;
      for (; end > start; --end) {
        const std::string_view chars(utf8.data() + byte_offsets[start], byte_offsets[end] - byte_offsets[start]);
        if (start == 0) {
          id = tokenizer_.find(chars);
        } else {
          candidate.assign(kContinuationPrefix).append(chars);
          id = tokenizer_.find(candidate);
        }
        if (id >= 0) break;
      }
      if (id < 0) return add_unknown(word);
      found.push_back({start, end, id});
      start = end;
    }
    for (const Piece& piece : found) {
      Token token;
      token.continuation = piece.first > 0;
      if (token.continuation) token.text = kContinuationPrefix;
      token.text.append(utf8, byte_offsets[piece.first], byte_offsets[piece.last] - byte_offsets[piece.first]);
      token.id = piece.id;
      token.begin = std::numeric_limits<size_t>::max();
      for (size_t i = piece.first; i < piece.last; ++i) {
        token.begin = std::min(token.begin, word[i].begin);
        token.end = std::max(token.end, word[i].end);
      }
      tokens_.push_back(std::move(token));
    }
  }

  const BertTokenizer& tokenizer_;
  std::vector<Token>& tokens_;
};

BertTokenizer::BertTokenizer(const TokenizerSettings& settings) : settings_(settings) {
  if (settings_.type != "bert_wordpiece")
    throw Error("tokenizer type '" + settings_.type + "' is not supported (only bert_wordpiece)");
  if (settings_.max_input_chars_per_word <= 0) throw Error("tokenizer max_input_chars_per_word must be positive");
  if (settings_.vocab.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw Error("tokenizer vocabulary is too large");
  ids_.reserve(settings_.vocab.size());
  for (size_t id = 0; id < settings_.vocab.size(); ++id) {
    const std::string& entry = settings_.vocab[id];
    ids_.insert_or_assign(entry, static_cast<int32_t>(id));  // the last of duplicates wins, as in load_vocab
    size_t chars = 0;
    for (const char byte : entry) chars += (static_cast<unsigned char>(byte) & 0xC0) != 0x80;
    longest_entry_chars_ = std::max(longest_entry_chars_, chars);
  }
  unk_id_ = require(settings_.unk_token, "unknown");
  cls_id_ = require(settings_.cls_token, "[CLS]");
  sep_id_ = require(settings_.sep_token, "[SEP]");
  pad_id_ = require(settings_.pad_token, "[PAD]");
  for (const std::string* token :
       {&settings_.unk_token, &settings_.sep_token, &settings_.pad_token, &settings_.cls_token, &settings_.mask_token}) {
    std::u32string code_points = to_u32string(*token);
    if (!code_points.empty() && std::find(special_tokens_.begin(), special_tokens_.end(), code_points) == special_tokens_.end())
      special_tokens_.push_back(std::move(code_points));
  }
}

int32_t BertTokenizer::find(std::string_view token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

int32_t BertTokenizer::require(const std::string& token, const char* role) const {
  const int32_t id = find(token);
  if (id < 0) throw Error(std::string("tokenizer vocabulary has no ") + role + " token '" + token + "'");
  return id;
}

int32_t BertTokenizer::id_of(std::string_view token) const {
  const int32_t id = find(token);
  return id < 0 ? unk_id_ : id;
}

std::vector<Token> BertTokenizer::tokenize(std::string_view utf8) const {
  TrackedText text = unicode::decode_utf8(utf8);
  if (settings_.do_lower_case) text = lowercase_outside_special_tokens(text, special_tokens_);
  std::vector<Token> tokens;
  TokenizerPass pass(*this, tokens);
  for (const Segment& segment : split_on_special_tokens(text, special_tokens_)) {
    const TrackedChar* first = text.data() + segment.first;
    const TrackedChar* last = text.data() + segment.last;
    if (segment.special)
      pass.add_special_token(first, last);
    else
      pass.add_plain_text(first, last);
  }
  make_spans_monotone(tokens);
  return tokens;
}

}  // namespace halfserve
