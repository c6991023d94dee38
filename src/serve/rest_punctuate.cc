#include "serve/rest_punctuate.h"

#include "serve/punctuate_request.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "serve/json_numbers.h"

#include "halfserve/serve/serving_error.h"
#include "halfserve/text/punctuation.h"
#include "halfserve/util/error.h"

namespace halfserve::rest {

using nlohmann::json;

namespace {

// The probabilities of every window the punctuator ran, keyed by the window's content ids ([CLS] and [SEP] left
// out). Windows with the same ids have the same probabilities, so the key needs no text or position.
class WindowProbabilities {
 public:
  explicit WindowProbabilities(size_t num_labels) : num_labels_(num_labels) {}

  // `run` with probabilities added to what the punctuator asks for, recording them.
  ModelRunner recording(const ModelRunner& run) {
    return [this, run](const InputBatch& in, const OutputSelection& selection) {
      OutputSelection wanted = selection;
      wanted.probabilities = true;
      OutputBatch out = run(in, wanted);
      record(in, out);
      return out;
    };
  }

  // [count, num_labels] for the window with these content ids; null when no such window ran.
  const std::vector<float>* find(const std::vector<int32_t>& content) const {
    const auto found = windows_.find(content);
    return found == windows_.end() ? nullptr : &found->second;
  }

 private:
  void record(const InputBatch& in, const OutputBatch& out) {
    const auto length = static_cast<size_t>(in.length);
    for (size_t row = 0; row < static_cast<size_t>(in.batch); ++row) {
      size_t tokens = 0;  // [CLS] content [SEP], then padding with mask 0
      while (tokens < length && in.attention_mask[row * length + tokens] != 0) ++tokens;
      if (tokens < 2) continue;
      const size_t first = row * length + 1, count = tokens - 2;
      std::vector<int32_t> content(in.input_ids.begin() + static_cast<ptrdiff_t>(first),
                                   in.input_ids.begin() + static_cast<ptrdiff_t>(first + count));
      std::vector<float> probabilities(out.probabilities.begin() + static_cast<ptrdiff_t>(first * num_labels_),
                                       out.probabilities.begin() + static_cast<ptrdiff_t>((first + count) * num_labels_));
      windows_.try_emplace(std::move(content), std::move(probabilities));
    }
  }

  size_t num_labels_;
  std::map<std::vector<int32_t>, std::vector<float>> windows_;
};

// The probability of each token's label, from the window the punctuator took the label from: Punctuator's window
// plan (windows of `window` tokens every `stride`, the last one ending with the text) and its rule (the window
// whose centre is nearest to the token, the earlier one on a tie).
std::vector<float> token_probabilities(const TextPrediction& text, const WindowProbabilities& recorded, size_t window,
                                       size_t stride, size_t num_labels) {
  const size_t tokens = text.tokens.size();
  std::vector<std::pair<size_t, size_t>> windows;  // (first, count)
  for (size_t first = 0; tokens > 0; first += stride) {
    if (first + window >= tokens) {
      const size_t last_first = tokens > window ? tokens - window : 0;
      windows.emplace_back(last_first, tokens - last_first);
      break;
    }
    windows.emplace_back(first, window);
  }
  auto distance = [&](size_t w, size_t token) {
    return std::fabs(static_cast<double>(token) -
                     (static_cast<double>(windows[w].first) + (static_cast<double>(windows[w].second) - 1) / 2.0));
  };
  std::vector<float> result(tokens, 0.0f);
  size_t best = 0;
  std::vector<int32_t> content;
  const std::vector<float>* probabilities = nullptr;
  size_t looked_up = windows.size();
  for (size_t token = 0; token < tokens; ++token) {
    while (best + 1 < windows.size() && windows[best + 1].first <= token && distance(best + 1, token) < distance(best, token))
      ++best;
    if (looked_up != best) {
      const auto [first, count] = windows[best];
      content.clear();
      for (size_t i = first; i < first + count; ++i) content.push_back(text.tokens[i].id);
      probabilities = recorded.find(content);
      if (probabilities == nullptr) throw ServingError(ServingCode::internal, "punctuate: a window's probabilities are missing");
      looked_up = best;
    }
    const size_t label = static_cast<size_t>(text.token_labels[token]);
    result[token] = (*probabilities)[(token - windows[best].first) * num_labels + label];
  }
  return result;
}

// For each byte of `clean` (the input with some whole characters removed), its offset in `input`. Matching greedily
// is exact here: a removed mark never equals the next kept character (a kept ASCII mark sits between letters or
// digits, which are never removed).
std::vector<size_t> input_offsets(std::string_view input, std::string_view clean) {
  std::vector<size_t> offsets(clean.size());
  size_t at = 0;
  for (size_t j = 0; j < clean.size();) {
    char32_t codepoint = 0;
    const size_t length = std::max<size_t>(1, decode_utf8(clean, j, codepoint));
    while (at < input.size() && input.substr(at, length) != clean.substr(j, length))
      at += std::max<size_t>(1, decode_utf8(input, at, codepoint));
    if (at >= input.size()) throw ServingError(ServingCode::internal, "punctuate: cleaned text does not align with the input");
    for (size_t k = 0; k < length; ++k) offsets[j + k] = at + k;
    at += length;
    j += length;
  }
  return offsets;
}

json token_list(const TextPrediction& prediction, const std::string& input, const std::vector<Label>& labels,
                const std::vector<float>* probabilities, bool keep_existing) {
  const std::vector<size_t> offsets = keep_existing ? std::vector<size_t>{} : input_offsets(input, prediction.clean);
  // Spans are [begin, end) in the cleaned text; an empty span sits right after the previous character.
  auto to_input_end = [&](size_t end) { return keep_existing || end == 0 ? end : offsets[end - 1] + 1; };
  auto to_input_begin = [&](size_t begin, size_t end) {
    return begin == end ? to_input_end(end) : keep_existing ? begin : offsets[begin];
  };
  json tokens = json::array();
  for (size_t i = 0; i < prediction.tokens.size(); ++i) {
    const Token& token = prediction.tokens[i];
    const Label& label = labels[static_cast<size_t>(prediction.token_labels[i])];
    json entry = {{"token", token.text},
                  {"begin", to_input_begin(token.begin, token.end)},
                  {"end", to_input_end(token.end)},
                  {"label", label.name},
                  {"mark", label.mark}};
    if (label.capitalize) entry["capitalize"] = true;
    if (probabilities != nullptr) entry["probability"] = json_float((*probabilities)[i]);
    tokens.push_back(std::move(entry));
  }
  return tokens;
}

}  // namespace

std::string punctuate_json(std::string_view body, const ModelMetadata& metadata,
                           std::shared_ptr<const BertTokenizer> tokenizer, const ModelRunner& run) {
  if (tokenizer == nullptr)
    throw ServingError(ServingCode::failed_precondition, "this model has no vocabulary: it cannot tokenize text to punctuate");
  if (!metadata.has_head())
    throw ServingError(ServingCode::failed_precondition, "this model has no token classification head: it cannot punctuate");
  const PunctuateRequest request = parse_punctuate_request(body);
  const size_t num_labels = metadata.labels.size();
  WindowProbabilities recorded(num_labels);
  Punctuator punctuator(metadata, std::move(tokenizer), request.probabilities ? recorded.recording(run) : run,
                        request.options);
  const std::vector<TextPrediction> predictions = punctuator.predict(request.texts);

  json texts = json::array(), tokens = json::array();
  for (size_t t = 0; t < predictions.size(); ++t) {
    texts.push_back(punctuator.render(predictions[t]));
    if (!request.wants_tokens()) continue;
    std::vector<float> probabilities;
    if (request.probabilities)
      probabilities = token_probabilities(predictions[t], recorded, static_cast<size_t>(punctuator.window()),
                                          static_cast<size_t>(punctuator.stride()), num_labels);
    tokens.push_back(token_list(predictions[t], request.texts[t], metadata.labels,
                                request.probabilities ? &probabilities : nullptr, request.options.keep_existing));
  }
  json reply;
  if (request.single_text) {
    reply["text"] = std::move(texts[0]);
    if (request.wants_tokens()) reply["tokens"] = std::move(tokens[0]);
  } else {
    reply["texts"] = std::move(texts);
    if (request.wants_tokens()) reply["tokens"] = std::move(tokens);
  }
  return reply.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace halfserve::rest
