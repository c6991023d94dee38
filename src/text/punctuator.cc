#include "halfserve/text/punctuator.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utf8proc.h>

#include "halfserve/util/error.h"
#include "text/unicode.h"

namespace halfserve {

namespace {

// Whether a mark may follow this word: not after punctuation the input kept ("3.14" keeps its '.', and "(" needs
// no comma), except after closing quotes and brackets, which sentence marks do follow ("“好”。").
bool accepts_mark_after(std::string_view word) {
  bool all_punctuation = !word.empty();
  char32_t last = 0;
  for (size_t at = 0; at < word.size();) {
    const size_t length = decode_utf8(word, at, last);
    if (length == 0) return true;
    all_punctuation &= is_punctuation(last);
    at += length;
  }
  if (!all_punctuation) return true;
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(last));
  return category == UTF8PROC_CATEGORY_PE || category == UTF8PROC_CATEGORY_PF;
}

// Appends the word's first code point in title case (as utf8proc maps it: "é" -> "É"; a character without an upper
// case stays itself) and returns the bytes of `word` it stands for. Only the first letter changes: "iPhone" and
// "API" keep the rest of their case.
size_t append_capitalized_first(std::string_view word, std::string& out) {
  char32_t first = 0;
  const size_t length = decode_utf8(word, 0, first);
  if (length == 0) return 0;
  // Title case, not upper case: the digraph "ǆ" starts a word as "ǅ".
  const auto upper = static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(first)));
  unicode::append_utf8(upper, out);
  return length;
}

}  // namespace

Punctuator::Punctuator(std::shared_ptr<const BertModel> model, PunctuatorOptions options)
    : Punctuator(model->metadata(), std::make_shared<const BertTokenizer>(model->metadata().tokenizer),
                 [model, workspace = std::make_shared<Workspace>()](const InputBatch& in, const OutputSelection& out) {
                   return model->run(in, out, *workspace);
                 },
                 options) {}

Punctuator::Punctuator(const ModelMetadata& metadata, std::shared_ptr<const BertTokenizer> tokenizer, ModelRunner runner,
                       PunctuatorOptions options)
    : labels_(metadata.labels),
      tokenizer_(std::move(tokenizer)),
      runner_(std::move(runner)),
      marks_(metadata.labels),
      options_(options) {
  if (!metadata.has_head()) throw Error("this model has no token head: it cannot restore punctuation");
  const int64_t positions = metadata.config.max_positions;
  const int64_t window = options_.window == 0 ? positions : options_.window;
  if (window < 3 || window > positions)
    throw InvalidArgument("window " + std::to_string(window) + " must be between 3 and the model's " +
                          std::to_string(positions) + " positions");
  window_ = window - 2;  // [CLS] and [SEP]
  stride_ = options_.stride == 0 ? std::max<int64_t>(1, window_ / 2) : options_.stride;
  // At least a quarter window: every token is computed by at most 4 windows, so a small stride cannot multiply the
  // work of a request (stride 1 over a 510-token window would run the model 510 times per token).
  const int64_t min_stride = std::max<int64_t>(1, (window_ + 3) / 4);
  if (stride_ < min_stride || stride_ > window_)
    throw InvalidArgument("stride " + std::to_string(stride_) + " must be between " + std::to_string(min_stride) +
                          " (a quarter of the window) and the window's " + std::to_string(window_) + " content tokens");
  if (options_.batch_size < 1) throw InvalidArgument("batch size must be positive");
}

std::vector<Punctuator::Window> Punctuator::plan_windows(const std::vector<TextPrediction>& texts) const {
  std::vector<Window> windows;
  for (size_t t = 0; t < texts.size(); ++t) {
    const size_t tokens = texts[t].tokens.size();
    const auto width = static_cast<size_t>(window_);
    for (size_t first = 0;; first += static_cast<size_t>(stride_)) {
      if (tokens == 0) break;
      if (first + width >= tokens) {
        // The last window ends with the text, so no window is shorter than it needs to be.
        const size_t last_first = tokens > width ? tokens - width : 0;
        windows.push_back({t, last_first, tokens - last_first});
        break;
      }
      windows.push_back({t, first, width});
    }
  }
  return windows;
}

void Punctuator::run_windows(std::vector<Window>& windows, std::vector<TextPrediction>& texts) {
  // Labels of each window's content tokens, filled batch by batch.
  std::vector<std::vector<int32_t>> window_labels(windows.size());
  std::vector<size_t> order(windows.size());
  std::iota(order.begin(), order.end(), 0);
  // Longest first: batches hold windows of similar length, so little is padding.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return windows[a].count > windows[b].count; });
  const auto batch_size = static_cast<size_t>(options_.batch_size);
  for (size_t start = 0; start < order.size(); start += batch_size) {
    const size_t end = std::min(order.size(), start + batch_size);
    InputBatch batch;
    batch.batch = static_cast<int64_t>(end - start);
    batch.length = static_cast<int64_t>(windows[order[start]].count) + 2;
    batch.input_ids.assign(static_cast<size_t>(batch.batch * batch.length), tokenizer_->pad_id());
    batch.attention_mask.assign(batch.input_ids.size(), 0);
    for (size_t row = 0; row < end - start; ++row) {
      const Window& window = windows[order[start + row]];
      int32_t* ids = batch.input_ids.data() + row * static_cast<size_t>(batch.length);
      int32_t* mask = batch.attention_mask.data() + row * static_cast<size_t>(batch.length);
      ids[0] = tokenizer_->cls_id();
      for (size_t i = 0; i < window.count; ++i) ids[i + 1] = texts[window.text].tokens[window.first + i].id;
      ids[window.count + 1] = tokenizer_->sep_id();
      std::fill(mask, mask + window.count + 2, 1);
    }
    const OutputBatch out = runner_(batch, {false, true, false, false});
    for (size_t row = 0; row < end - start; ++row) {
      const Window& window = windows[order[start + row]];
      const int32_t* labels = out.label_ids.data() + row * static_cast<size_t>(batch.length) + 1;
      window_labels[order[start + row]].assign(labels, labels + window.count);
    }
  }

  // Each token takes the label of the window whose centre is nearest (windows of a text are in order, so the
  // best window only moves forward: linear in the text length).
  size_t next = 0;
  for (size_t t = 0; t < texts.size(); ++t) {
    TextPrediction& text = texts[t];
    text.token_labels.assign(text.tokens.size(), 0);
    const size_t first_window = next;
    while (next < windows.size() && windows[next].text == t) ++next;
    size_t best = first_window;
    auto distance = [&](size_t w, size_t token) {
      return std::fabs(static_cast<double>(token) - (static_cast<double>(windows[w].first) + (windows[w].count - 1) / 2.0));
    };
    for (size_t token = 0; token < text.tokens.size(); ++token) {
      while (best + 1 < next && windows[best + 1].first <= token && distance(best + 1, token) < distance(best, token)) ++best;
      text.token_labels[token] = window_labels[best][token - windows[best].first];
    }
  }
}

std::vector<TextPrediction> Punctuator::predict(const std::vector<std::string>& texts) {
  std::vector<TextPrediction> predictions(texts.size());
  for (size_t t = 0; t < texts.size(); ++t) {
    TextPrediction& prediction = predictions[t];
    prediction.clean = options_.keep_existing ? texts[t] : marks_.strip(texts[t]);
    prediction.tokens = tokenizer_->tokenize(prediction.clean);
  }
  std::vector<Window> windows = plan_windows(predictions);
  run_windows(windows, predictions);
  for (TextPrediction& prediction : predictions) {
    for (size_t i = 0; i < prediction.tokens.size(); ++i) {
      const Token& token = prediction.tokens[i];
      if (token.continuation && !prediction.words.empty()) {
        PredictedWord& word = prediction.words.back();
        ++word.token_count;
        word.end = std::max(word.end, token.end);
        continue;
      }
      prediction.words.push_back({i, 1, token.begin, token.end, prediction.token_labels[i]});
    }
  }
  return predictions;
}

std::string Punctuator::render(const TextPrediction& prediction) const {
  const std::vector<Label>& labels = labels_;
  const std::string_view text = prediction.clean;
  std::string out;
  out.reserve(prediction.clean.size() + prediction.words.size() * 3);
  size_t copied = 0;
  for (const PredictedWord& word : prediction.words) {
    const Label& label = labels[static_cast<size_t>(word.label)];
    if (label.capitalize && word.begin >= copied) {
      out.append(text.substr(copied, word.begin - copied));
      copied = word.begin + append_capitalized_first(text.substr(word.begin, word.end - word.begin), out);
    }
    const std::string& mark = label.mark;
    if (mark.empty() || word.end < copied) continue;
    if (!accepts_mark_after(text.substr(word.begin, word.end - word.begin))) continue;
    if (text.substr(word.end, mark.size()) == mark) continue;  // the input already has it (--keep-existing)
    if (word.end < text.size() && MarkSet::inside_word(text, word.end, 1)) continue;  // "3|.14": inside a number
    out.append(text.substr(copied, word.end - copied));
    out.append(mark);
    copied = word.end;
  }
  out.append(std::string_view(prediction.clean).substr(copied));
  return out;
}

std::vector<std::string> Punctuator::punctuate(const std::vector<std::string>& texts) {
  const std::vector<TextPrediction> predictions = predict(texts);
  std::vector<std::string> results;
  results.reserve(predictions.size());
  for (const auto& prediction : predictions) results.push_back(render(prediction));
  return results;
}

}  // namespace halfserve
