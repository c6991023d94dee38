#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "halfserve/text/punctuator.h"

namespace halfserve {

// Window and stride mean what they mean for PunctuatorOptions (the same numbers give the same output), and are
// validated the same way: 3 <= window <= the model's positions, a quarter window <= stride <= the window's
// content (window - 2). 0 takes Punctuator's defaults (the model's positions; half the content).
struct StreamingOptions {
  int64_t window = 64;      // tokens per model call, [CLS] and [SEP] included
  int64_t stride = 16;      // tokens between window starts
  int64_t batch_size = 32;  // windows per model call when several become ready at once
};

struct CommittedWord {
  std::string text;   // the word as it stands in the input, its marks removed (before any capitalization)
  std::string label;  // the name of the label the model chose for its first token
  std::string mark;   // the mark inserted after the word in the committed text; "" when none was
  float probability = 0.0f;  // the model's probability for that label (softmax of its first token's logits)
};

// What one call settled: append `text` of every commit, in order, and you have the offline output.
struct StreamCommit {
  std::string text;  // punctuated text, newly committed (words, the marks after them, the whitespace between)
  std::vector<CommittedWord> words;
};

// Punctuation for text that arrives in pieces (live speech recognition). A stream's committed output is exactly
// what Punctuator (same window and stride, keep_existing=false) gives for all the text it received since the last
// flush, and each word is committed as soon as the offline windows that decide its label are certain, whatever
// text comes next (docs/streaming.md derives the condition). State is bounded by the window, plus the word still
// being typed: committed tokens and text are dropped and every window runs once. One stream per object, not
// thread-safe; many objects may share one tokenizer and one runner that is safe to call from their threads.
class StreamingPunctuator {
 public:
  // `tokenizer` must be built from `metadata`'s settings. Throws InvalidArgument for a bad window or stride, Error
  // for a model without a token head.
  StreamingPunctuator(const ModelMetadata& metadata, std::shared_ptr<const BertTokenizer> tokenizer, ModelRunner runner,
                      StreamingOptions options);

  // Takes the next piece of text. Pieces may split a word or a UTF-8 character anywhere (the incomplete bytes
  // wait for the next piece). Invalid UTF-8 throws InvalidArgument naming the byte offset; the piece is then not
  // taken (nor a partial character before it that the piece proved invalid), and the stream stays usable. When the
  // runner throws, the text is kept and the next append or flush runs the windows again.
  StreamCommit append(std::string_view piece);
  // The end of the text: commits everything left. The next append starts a new text, as a new offline text
  // would. A partial UTF-8 character left at the end throws InvalidArgument and is dropped; flush again to
  // commit the rest.
  StreamCommit flush();
  // Drops everything not yet committed; the next append starts a new text.
  void reset();

  // The most tokens that must follow a token before it is committed (the first window's content less one).
  int64_t max_lookahead_tokens() const;
  // Text bytes held: what is not committed yet, the word still being typed, a partial character.
  size_t buffered_bytes() const;
  // Tokens held (for tests and metrics): at most about a window and a stride.
  size_t buffered_tokens() const { return tokens_.size(); }
  int64_t tokens_received() const { return token_count_; }   // complete tokens of the current text
  int64_t tokens_committed() const { return committed_tokens_; }

  int64_t window() const { return punctuator_.window(); }  // content tokens per window
  int64_t stride() const { return punctuator_.stride(); }

  // For content window `window` and `stride` (tokens): the regular window (index k: tokens [k*stride,
  // k*stride+window)) that decides `token`'s label when the text goes on far enough, and how many tokens of the
  // text must have been received before that decision is final whatever follows (docs/streaming.md).
  static int64_t deciding_window(int64_t token, int64_t window, int64_t stride);
  static int64_t tokens_needed(int64_t token, int64_t window, int64_t stride);

 private:
  struct StreamToken {
    int32_t id = 0;
    size_t begin = 0, end = 0;  // bytes of the clean text, counted from the start of the text
    bool continuation = false;
  };
  struct WindowResult {
    int64_t first = 0;  // token index
    int64_t count = 0;
    std::vector<int32_t> labels;
    std::vector<float> probabilities;  // of each token's label
  };

  // Validates and decodes `piece` after the pending partial character; strips marks into clean_.
  void take_text(std::string_view piece);
  void strip_character(std::string_view bytes);
  void decide_held_mark(char next);
  // Tokenizes the clean text up to the last point where later text cannot change its tokens.
  void tokenize_settled(bool end_of_text);
  void run_windows(const std::vector<int64_t>& firsts, const std::vector<int64_t>& counts);
  StreamCommit commit(bool end_of_text);
  void append_word(int64_t first_token, int64_t end_token, size_t chunk_end, int32_t label, float probability,
                   StreamCommit& out);
  void drop_unneeded();
  const StreamToken& token(int64_t index) const { return tokens_[static_cast<size_t>(index - token_base_)]; }

  std::shared_ptr<const BertTokenizer> tokenizer_;
  Punctuator punctuator_;  // validation, the mark set and the rendering: one definition of the output
  std::vector<Label> labels_;
  size_t render_view_bytes_ = 2;  // clean bytes after a word that rendering may look at
  bool cut_at_ideographs_ = true;
  ModelRunner runner_;
  int64_t batch_size_ = 32;

  // The current text. Offsets count from its start: raw bytes of the input, clean bytes (marks removed), tokens.
  std::string partial_character_;  // a UTF-8 sequence still missing bytes
  size_t raw_bytes_ = 0;
  char last_raw_byte_ = 0;
  std::optional<char> held_mark_;  // an ASCII mark that stays only if the next byte is a letter or digit
  bool held_mark_after_alnum_ = false;
  std::string clean_;              // clean text from clean_base_ on
  size_t clean_base_ = 0;
  size_t scanned_ = 0;             // clean bytes looked at for places to cut
  size_t settled_cut_ = 0;         // the last such place: tokens before it are final
  size_t tokenized_ = 0;           // clean bytes tokenized
  std::deque<StreamToken> tokens_;  // tokens from token_base_ on
  int64_t token_base_ = 0;
  int64_t token_count_ = 0;
  int64_t next_window_ = 0;          // the first token of the next regular window to run
  std::deque<WindowResult> windows_;  // run windows still needed, in order
  int64_t committed_tokens_ = 0;
  size_t committed_bytes_ = 0;       // clean bytes committed (the next chunk starts here)
  int64_t last_decider_ = -1;        // first token of the window that decided the last committed token
};

// The length of the incomplete UTF-8 sequence that ends `text` (0 to 3): bytes that may still become a valid
// character when more text comes. Bytes before it are not looked at.
size_t incomplete_utf8_suffix(std::string_view text);

}  // namespace halfserve
