#include "halfserve/text/streaming_punctuator.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <utf8proc.h>

#include "halfserve/util/error.h"
#include "text/unicode.h"

namespace halfserve {

namespace {

// Where later text cannot change the tokens before a point. BertTokenizer ends a word at whitespace and puts every
// CJK ideograph in a word of its own (with spaces around it, before Unicode normalisation), so after either the
// tokens so far are final: nothing after them joins their word, composes with their characters (whitespace and
// ideographs start no canonical composition) or completes a special token (those have neither; the constructor
// checks). These two tests are BertTokenizer's own (_is_whitespace and _is_chinese_char, src/text/tokenizer.cc).
bool is_bert_whitespace(char32_t code) {
  return code == ' ' || code == '\t' || code == '\n' || code == '\r' || (code >= 0x80 && unicode::is_space_separator(code));
}

bool is_cjk_ideograph(char32_t code) {
  return (code >= 0x4E00 && code <= 0x9FFF) || (code >= 0x3400 && code <= 0x4DBF) ||
         (code >= 0x20000 && code <= 0x2A6DF) || (code >= 0x2A700 && code <= 0x2B73F) ||
         (code >= 0x2B740 && code <= 0x2B81F) || (code >= 0x2B820 && code <= 0x2CEAF) ||
         (code >= 0xF900 && code <= 0xFAFF) || (code >= 0x2F800 && code <= 0x2FA1F);
}

constexpr size_t kCommitLookaheadBytes = 2;

bool is_ascii_alnum(char byte) { return std::isalnum(static_cast<unsigned char>(byte)) != 0; }

// Bytes a well-formed sequence starting with `lead` has (Unicode table 3-7); 0 when it starts none.
size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether `second` may follow `lead` in a well-formed sequence (no overlong forms, surrogates or code points
// past U+10FFFF).
bool valid_second_byte(unsigned char lead, unsigned char second) {
  switch (lead) {
    case 0xE0: return second >= 0xA0 && second <= 0xBF;
    case 0xED: return second >= 0x80 && second <= 0x9F;
    case 0xF0: return second >= 0x90 && second <= 0xBF;
    case 0xF4: return second >= 0x80 && second <= 0x8F;
    default: return second >= 0x80 && second <= 0xBF;
  }
}

// How many bytes capitalizing the word's first character adds (Punctuator::render title-cases it).
long capitalization_growth(std::string_view word) {
  char32_t first = 0;
  const size_t length = decode_utf8(word, 0, first);
  if (length == 0) return 0;
  std::string title;
  unicode::append_utf8(static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(first))), title);
  return static_cast<long>(title.size()) - static_cast<long>(length);
}

bool has_cut_character(std::string_view text) {
  for (size_t at = 0; at < text.size();) {
    char32_t code = 0;
    const size_t length = decode_utf8(text, at, code);
    if (length == 0) return false;
    if (is_bert_whitespace(code) || is_cjk_ideograph(code)) return true;
    at += length;
  }
  return false;
}

}  // namespace

size_t incomplete_utf8_suffix(std::string_view text) {
  // The last byte that is not a continuation byte, within the last three.
  for (size_t back = 1; back <= std::min<size_t>(3, text.size()); ++back) {
    const size_t at = text.size() - back;
    const auto byte = static_cast<unsigned char>(text[at]);
    if ((byte & 0xC0) == 0x80) continue;
    const size_t expected = utf8_sequence_length(byte);
    if (expected <= back) return 0;
    if (back >= 2 && !valid_second_byte(byte, static_cast<unsigned char>(text[at + 1]))) return 0;
    if (back == 3 && (static_cast<unsigned char>(text[at + 2]) & 0xC0) != 0x80) return 0;
    return back;
  }
  return 0;
}

int64_t StreamingPunctuator::deciding_window(int64_t token, int64_t window, int64_t stride) {
  // The earliest regular window whose centre k*stride + (window-1)/2 is nearest: token <= k*stride + (window-1+stride)/2.
  const int64_t excess = 2 * token - window + 1 - stride;
  return excess <= 0 ? 0 : (excess + 2 * stride - 1) / (2 * stride);
}

int64_t StreamingPunctuator::tokens_needed(int64_t token, int64_t window, int64_t stride) {
  const int64_t k = deciding_window(token, window, stride);
  // Window k must be whole (whether it stays regular or ends the text, it is then the same tokens)...
  const int64_t whole = k * stride + window;
  // ...and a token right of its centre must stay nearer it than any end-aligned window after it could be: an
  // end-aligned last window over n tokens starts at n - window, and the token prefers it when 2*token > k*stride
  // + n - 1. Once n >= 2*token + 1 - k*stride, no text length can do that.
  if (2 * token <= 2 * k * stride + window) return whole;
  return std::max(whole, 2 * token + 1 - k * stride);
}

StreamingPunctuator::StreamingPunctuator(const ModelMetadata& metadata, std::shared_ptr<const BertTokenizer> tokenizer,
                                         ModelRunner runner, StreamingOptions options)
    : tokenizer_(tokenizer),
      punctuator_(metadata, tokenizer, runner, PunctuatorOptions{options.window, options.stride, options.batch_size, false}),
      labels_(metadata.labels),
      cut_at_ideographs_(tokenizer->settings().tokenize_chinese_chars),
      runner_(std::move(runner)),
      batch_size_(options.batch_size) {
  // Punctuator::render looks at most max(2, mark length) bytes past a word: is the next character an ASCII mark
  // between two letters or digits ("3.14"), is the mark already there. With marks stripped, the mark can only be
  // "there" as such an ASCII mark, so two bytes decide a commit; the view render gets is as long as it may read.
  for (const Label& label : labels_) render_view_bytes_ = std::max(render_view_bytes_, label.mark.size());
  const TokenizerSettings& settings = tokenizer_->settings();
  for (const std::string* special : {&settings.unk_token, &settings.cls_token, &settings.sep_token, &settings.pad_token,
                                     &settings.mask_token})
    if (has_cut_character(*special))
      throw Error("streaming punctuation needs special tokens without spaces or CJK ideographs; '" + *special +
                  "' has one");
}

int64_t StreamingPunctuator::max_lookahead_tokens() const { return window() - 1; }

size_t StreamingPunctuator::buffered_bytes() const {
  return clean_.size() + partial_character_.size() + (held_mark_ ? 1 : 0);
}

void StreamingPunctuator::reset() {
  partial_character_.clear();
  raw_bytes_ = 0;
  last_raw_byte_ = 0;
  held_mark_.reset();
  held_mark_after_alnum_ = false;
  clean_.clear();
  clean_base_ = scanned_ = settled_cut_ = tokenized_ = 0;
  tokens_.clear();
  token_base_ = token_count_ = next_window_ = committed_tokens_ = 0;
  windows_.clear();
  committed_bytes_ = 0;
  last_decider_ = -1;
}

void StreamingPunctuator::take_text(std::string_view piece) {
  std::string text = partial_character_;
  text.append(piece);
  // Check everything before changing anything, so a bad piece leaves the stream as it was.
  size_t complete = 0;
  while (complete < text.size()) {
    char32_t code = 0;
    const size_t length = decode_utf8(text, complete, code);
    if (length > 0) {
      complete += length;
      continue;
    }
    if (incomplete_utf8_suffix(text) == text.size() - complete) break;  // waits for the next piece
    const size_t offset = raw_bytes_ + complete, carried = partial_character_.size();
    std::string where = complete < carried ? "the partial character that ended the previous piece"
                                           : "byte " + std::to_string(complete - carried) + " of this piece";
    // A partial character the piece proved bad can never be completed: it goes too.
    if (complete < carried) partial_character_.clear();
    throw InvalidArgument("invalid UTF-8 at byte " + std::to_string(offset) + " of the text (" + where +
                          "); the piece was not taken");
  }
  for (size_t at = 0; at < complete;) {
    char32_t code = 0;
    const size_t length = decode_utf8(text, at, code);
    strip_character(std::string_view(text).substr(at, length));
    at += length;
  }
  partial_character_ = text.substr(complete);
}

void StreamingPunctuator::decide_held_mark(char next) {
  // MarkSet::inside_word: an ASCII mark between two ASCII letters or digits stays.
  if (held_mark_after_alnum_ && is_ascii_alnum(next)) clean_.push_back(*held_mark_);
  held_mark_.reset();
}

void StreamingPunctuator::strip_character(std::string_view bytes) {
  if (held_mark_) decide_held_mark(bytes[0]);
  char32_t code = 0;
  decode_utf8(bytes, 0, code);
  if (!punctuator_.marks().contains(code)) {
    clean_.append(bytes);
  } else if (bytes.size() == 1 && std::ispunct(static_cast<unsigned char>(bytes[0])) != 0 && raw_bytes_ > 0 &&
             is_ascii_alnum(last_raw_byte_)) {
    // MarkSet::strip looks one byte ahead: whether this mark stays depends on the byte after it.
    held_mark_ = bytes[0];
    held_mark_after_alnum_ = true;
  }
  last_raw_byte_ = bytes.back();
  raw_bytes_ += bytes.size();
}

void StreamingPunctuator::tokenize_settled(bool end_of_text) {
  const size_t clean_end = clean_base_ + clean_.size();
  while (scanned_ < clean_end) {
    char32_t code = 0;
    const size_t length = decode_utf8(clean_, scanned_ - clean_base_, code);
    if (length == 0) throw Error("streaming punctuator: clean text is not UTF-8");  // unreachable: checked on entry
    scanned_ += length;
    if (is_bert_whitespace(code) || (cut_at_ideographs_ && is_cjk_ideograph(code))) settled_cut_ = scanned_;
  }
  if (end_of_text) settled_cut_ = clean_end;
  if (settled_cut_ <= tokenized_) return;
  const std::string_view segment = std::string_view(clean_).substr(tokenized_ - clean_base_, settled_cut_ - tokenized_);
  for (const Token& piece : tokenizer_->tokenize(segment))
    tokens_.push_back({piece.id, tokenized_ + piece.begin, tokenized_ + piece.end, piece.continuation});
  token_count_ = token_base_ + static_cast<int64_t>(tokens_.size());
  tokenized_ = settled_cut_;
}

void StreamingPunctuator::run_windows(const std::vector<int64_t>& firsts, const std::vector<int64_t>& counts) {
  // Kept only when every batch ran: after a failed model call the same windows run again on the next call.
  std::vector<WindowResult> results;
  const auto batch_size = static_cast<size_t>(batch_size_);
  for (size_t start = 0; start < firsts.size(); start += batch_size) {
    const size_t end = std::min(firsts.size(), start + batch_size);
    InputBatch batch;
    batch.batch = static_cast<int64_t>(end - start);
    batch.length = *std::max_element(counts.begin() + static_cast<std::ptrdiff_t>(start),
                                     counts.begin() + static_cast<std::ptrdiff_t>(end)) + 2;
    batch.input_ids.assign(static_cast<size_t>(batch.batch * batch.length), tokenizer_->pad_id());
    batch.attention_mask.assign(batch.input_ids.size(), 0);
    for (size_t row = 0; row < end - start; ++row) {
      const auto count = static_cast<size_t>(counts[start + row]);
      int32_t* ids = batch.input_ids.data() + row * static_cast<size_t>(batch.length);
      int32_t* mask = batch.attention_mask.data() + row * static_cast<size_t>(batch.length);
      ids[0] = tokenizer_->cls_id();
      for (size_t i = 0; i < count; ++i) ids[i + 1] = token(firsts[start + row] + static_cast<int64_t>(i)).id;
      ids[count + 1] = tokenizer_->sep_id();
      std::fill(mask, mask + count + 2, 1);
    }
    const OutputBatch out = runner_(batch, {false, true, false, true});
    const size_t labels = labels_.size(), cells = static_cast<size_t>(batch.batch * batch.length);
    if (out.label_ids.size() != cells || out.probabilities.size() != cells * labels)
      throw Error("streaming punctuator: the model runner did not return label ids and probabilities");
    for (size_t row = 0; row < end - start; ++row) {
      WindowResult result{firsts[start + row], counts[start + row], {}, {}};
      const size_t base = row * static_cast<size_t>(batch.length) + 1;
      for (size_t i = 0; i < static_cast<size_t>(result.count); ++i) {
        const int32_t label = out.label_ids[base + i];
        result.labels.push_back(label);
        result.probabilities.push_back(out.probabilities[(base + i) * labels + static_cast<size_t>(label)]);
      }
      results.push_back(std::move(result));
    }
  }
  for (WindowResult& result : results) windows_.push_back(std::move(result));
}

StreamCommit StreamingPunctuator::append(std::string_view piece) {
  take_text(piece);
  tokenize_settled(false);
  // Every window whose tokens have all arrived runs now, once: whether the text later ends with it or goes on,
  // its tokens are the same.
  std::vector<int64_t> firsts, counts;
  for (int64_t first = next_window_; first + window() <= token_count_; first += stride()) {
    firsts.push_back(first);
    counts.push_back(window());
  }
  run_windows(firsts, counts);
  if (!firsts.empty()) next_window_ = firsts.back() + stride();
  return commit(false);
}

StreamCommit StreamingPunctuator::flush() {
  if (!partial_character_.empty()) {
    const size_t offset = raw_bytes_;
    partial_character_.clear();
    throw InvalidArgument("the text ends inside a UTF-8 character at byte " + std::to_string(offset) +
                          "; those bytes were dropped (flush again to commit the rest)");
  }
  if (held_mark_) held_mark_.reset();  // a mark at the very end is never inside a word
  tokenize_settled(true);
  // The rest of Punctuator's plan: regular windows not run yet, then the last one, ending with the text.
  std::vector<int64_t> firsts, counts;
  const int64_t tokens = token_count_;
  for (int64_t first = next_window_; tokens > 0; first += stride()) {
    if (first + window() >= tokens) {
      const int64_t last_first = std::max<int64_t>(0, tokens - window()), last_count = tokens - last_first;
      const bool already_run = std::any_of(windows_.begin(), windows_.end(), [&](const WindowResult& w) {
        return w.first == last_first && w.count == last_count;
      });
      if (!already_run) {
        firsts.push_back(last_first);
        counts.push_back(last_count);
      }
      break;
    }
    firsts.push_back(first);
    counts.push_back(window());
  }
  run_windows(firsts, counts);
  StreamCommit out = commit(true);
  reset();
  return out;
}

StreamCommit StreamingPunctuator::commit(bool end_of_text) {
  StreamCommit out;
  const size_t clean_end = clean_base_ + clean_.size();
  // The deciding window only moves forward, from the one that decided the last committed token. At the end, it
  // moves as Punctuator's own scan over the final windows does.
  size_t best = 0;
  if (last_decider_ >= 0)
    while (best + 1 < windows_.size() && windows_[best].first != last_decider_) ++best;
  auto distance = [&](size_t w, int64_t t) {
    return std::fabs(static_cast<double>(t) -
                     (static_cast<double>(windows_[w].first) + static_cast<double>(windows_[w].count - 1) / 2.0));
  };
  while (committed_tokens_ < token_count_) {
    const int64_t first = committed_tokens_;
    int64_t end = first + 1;
    while (end < token_count_ && token(end).continuation) ++end;
    // Tokens only arrive up to a place where a word ends, so the word is whole.
    const size_t word_end = token(end - 1).end;
    const size_t chunk_end = end < token_count_ ? token(end).begin : (end_of_text ? clean_end : tokenized_);
    if (end_of_text) {
      while (best + 1 < windows_.size() && windows_[best + 1].first <= first && distance(best + 1, first) < distance(best, first))
        ++best;
    } else {
      if (tokens_needed(first, window(), stride()) > token_count_) break;
      // Rendering looks a few bytes past the word (is the next character a digit, say): they must be there.
      if (clean_end < word_end + kCommitLookaheadBytes) break;
      const int64_t k_first = deciding_window(first, window(), stride()) * stride();
      while (best < windows_.size() && windows_[best].first != k_first) ++best;
      if (best == windows_.size()) throw Error("streaming punctuator: the deciding window was not run");
    }
    const WindowResult& window_result = windows_[best];
    const auto at = static_cast<size_t>(first - window_result.first);
    append_word(first, end, chunk_end, window_result.labels[at], window_result.probabilities[at], out);
    last_decider_ = window_result.first;
    committed_tokens_ = end;
    committed_bytes_ = chunk_end;
  }
  if (end_of_text && committed_bytes_ < clean_end) {
    out.text.append(clean_, committed_bytes_ - clean_base_, std::string::npos);  // text after the last word
    committed_bytes_ = clean_end;
  }
  drop_unneeded();
  return out;
}

void StreamingPunctuator::append_word(int64_t first_token, int64_t end_token, size_t chunk_end, int32_t label,
                                      float probability, StreamCommit& out) {
  // Punctuator::render over the clean text from the end of the last commit: it copies text up to the word, inserts
  // the word's mark, and copies the rest, so what it writes past chunk_end is plain text to cut off. Starting
  // between two words changes nothing, since render only looks at a word, a few bytes after it, and how far it has
  // copied (never past the word before).
  const size_t clean_end = clean_base_ + clean_.size();
  const size_t word_begin = token(first_token).begin, word_end = token(end_token - 1).end;
  const size_t view_end = std::min(clean_end, std::max(chunk_end, word_end + render_view_bytes_));
  TextPrediction prediction;
  prediction.clean = clean_.substr(committed_bytes_ - clean_base_, view_end - committed_bytes_);
  prediction.words.push_back({0, static_cast<size_t>(end_token - first_token), word_begin - committed_bytes_,
                              word_end - committed_bytes_, label});
  std::string rendered = punctuator_.render(prediction);
  const size_t tail = view_end - chunk_end;
  if (rendered.size() < tail || rendered.compare(rendered.size() - tail, tail, clean_, chunk_end - clean_base_, tail) != 0)
    throw Error("streaming punctuator: rendering changed text after the word");  // render's contract broke
  rendered.resize(rendered.size() - tail);

  const Label& chosen = labels_[static_cast<size_t>(label)];
  const std::string_view word = std::string_view(clean_).substr(word_begin - clean_base_, word_end - word_begin);
  const long added = static_cast<long>(rendered.size()) - static_cast<long>(chunk_end - committed_bytes_) -
                     (chosen.capitalize ? capitalization_growth(word) : 0);
  CommittedWord committed{std::string(word), chosen.name, "", probability};
  if (!chosen.mark.empty() && added == static_cast<long>(chosen.mark.size())) committed.mark = chosen.mark;
  out.text += rendered;
  out.words.push_back(std::move(committed));
}

void StreamingPunctuator::drop_unneeded() {
  // Windows before the one that decided the last committed token: no token left can take its label from them.
  while (!windows_.empty() && last_decider_ >= 0 && windows_.front().first < last_decider_) windows_.pop_front();
  // Tokens: those not committed, those of windows still to run, and the last window's (at most a window back).
  const int64_t keep_from = std::min({committed_tokens_, next_window_, std::max<int64_t>(0, token_count_ - window())});
  while (token_base_ < keep_from && !tokens_.empty()) {
    tokens_.pop_front();
    ++token_base_;
  }
  // Clean text: from the end of the last commit on.
  if (committed_bytes_ > clean_base_) {
    clean_.erase(0, committed_bytes_ - clean_base_);
    clean_base_ = committed_bytes_;
  }
}

}  // namespace halfserve
