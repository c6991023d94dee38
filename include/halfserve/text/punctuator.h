#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/text/punctuation.h"
#include "halfserve/text/tokenizer.h"

namespace halfserve {

struct PunctuatorOptions {
  int64_t window = 0;       // tokens per model call, [CLS] and [SEP] included; 0: the model's maximum positions
  int64_t stride = 0;       // tokens between window starts; 0: half the window's content
  int64_t batch_size = 32;  // windows per model call, drawn from all texts at once
  bool keep_existing = false;  // keep the input's own marks instead of removing them first
};

// A word of the (cleaned) text: its tokens and the label the model gave it.
struct PredictedWord {
  size_t first_token = 0;
  size_t token_count = 0;
  size_t begin = 0;  // bytes in `clean`
  size_t end = 0;
  int32_t label = 0;  // the label of the word's first piece
};

struct TextPrediction {
  std::string clean;                   // the input with its marks removed (or kept, with keep_existing)
  std::vector<Token> tokens;           // spans into `clean`
  std::vector<int32_t> token_labels;   // one per token
  std::vector<PredictedWord> words;
};

// Runs one padded batch of windows; the server passes one that goes through its batch scheduler.
using ModelRunner = std::function<OutputBatch(const InputBatch&, const OutputSelection&)>;

// Restores punctuation with a token-classification model. Texts longer than a window are cut into overlapping
// windows; every token takes its label from the window in which it sits most centrally, so a token always sees
// context on both sides where the text has it. Windows of all texts are sorted by length and batched together,
// so cost is linear in the total text length. Not thread-safe (it owns the model's workspace): one per thread.
class Punctuator {
 public:
  // Runs `model` itself, with a workspace of its own.
  Punctuator(std::shared_ptr<const BertModel> model, PunctuatorOptions options);
  // Runs windows through `runner`; `tokenizer` must be built from `metadata`'s settings and outlive the punctuator.
  Punctuator(const ModelMetadata& metadata, std::shared_ptr<const BertTokenizer> tokenizer, ModelRunner runner,
             PunctuatorOptions options);

  // Texts must be valid UTF-8 (InvalidArgument otherwise).
  std::vector<TextPrediction> predict(const std::vector<std::string>& texts);
  // The texts with the predicted marks inserted after each word. Removing every mark from a result gives the
  // input with every mark removed: nothing else is added, dropped or changed.
  std::vector<std::string> punctuate(const std::vector<std::string>& texts);
  std::string render(const TextPrediction& prediction) const;

  const MarkSet& marks() const { return marks_; }
  int64_t window() const { return window_; }
  int64_t stride() const { return stride_; }

 private:
  struct Window {
    size_t text = 0;
    size_t first = 0;   // first token of the text in this window
    size_t count = 0;   // tokens of the text in this window
  };
  std::vector<Window> plan_windows(const std::vector<TextPrediction>& texts) const;
  void run_windows(std::vector<Window>& windows, std::vector<TextPrediction>& texts);

  std::vector<Label> labels_;
  std::shared_ptr<const BertTokenizer> tokenizer_;
  ModelRunner runner_;
  MarkSet marks_;
  PunctuatorOptions options_;
  int64_t window_ = 0;  // content tokens per window ([CLS] and [SEP] excluded)
  int64_t stride_ = 0;
};

}  // namespace halfserve
