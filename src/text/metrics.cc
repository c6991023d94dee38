#include "halfserve/text/metrics.h"

#include <algorithm>
#include <utf8proc.h>

#include "halfserve/util/error.h"

namespace halfserve {

namespace {
double ratio(int64_t numerator, int64_t denominator) {
  return denominator == 0 ? 0.0 : static_cast<double>(numerator) / static_cast<double>(denominator);
}
}  // namespace

double MarkScore::precision() const { return ratio(true_positives, true_positives + false_positives); }
double MarkScore::recall() const { return ratio(true_positives, true_positives + false_negatives); }
double MarkScore::f1() const {
  const double p = precision(), r = recall();
  return p + r == 0 ? 0.0 : 2 * p * r / (p + r);
}

PunctuationScorer::PunctuationScorer(const std::vector<Label>& labels) : labels_(labels) {
  for (size_t i = 0; i < labels_.size(); ++i) {
    const Label& label = labels_[i];
    if (label.capitalize && !scores_.capitalization) scores_.capitalization = MarkScore{"capitals", "+U", 0, 0, 0};
    if (label.mark.empty()) {
      if (no_mark_label_ < 0 && !label.capitalize) no_mark_label_ = static_cast<int32_t>(i);
      continue;
    }
    const bool scored = std::any_of(scores_.per_mark.begin(), scores_.per_mark.end(),
                                    [&](const MarkScore& score) { return score.mark == label.mark; });
    if (!scored) scores_.per_mark.push_back({label.name, label.mark, 0, 0, 0});
  }
  scores_.micro.label = "all marks";
}

void PunctuationScorer::add_labels(const std::vector<int32_t>& gold, const std::vector<int32_t>& predicted) {
  if (gold.size() != predicted.size()) throw Error("gold and predicted label counts differ");
  auto score_of = [&](int32_t label) -> MarkScore* {
    if (label < 0 || label >= static_cast<int32_t>(labels_.size()) || labels_[static_cast<size_t>(label)].mark.empty())
      return nullptr;
    for (auto& score : scores_.per_mark)
      if (score.mark == labels_[static_cast<size_t>(label)].mark) return &score;
    return nullptr;
  };
  for (size_t i = 0; i < gold.size(); ++i) {
    ++scores_.words;
    MarkScore* want = score_of(gold[i]);
    MarkScore* got = score_of(predicted[i]);
    if (want != nullptr && want == got) {
      ++want->true_positives;
      continue;
    }
    if (got != nullptr) ++got->false_positives;
    if (want != nullptr) ++want->false_negatives;
  }
}

void PunctuationScorer::add(const ReferenceMarks& reference, const TextPrediction& prediction) {
  std::vector<int32_t> gold, predicted;
  size_t next_mark = 0;
  for (const PredictedWord& word : prediction.words) {
    // Marks where no word ends once they are stripped ("On，readline" reads as the word "Onreadline") cannot be
    // scored: counted, like marks no label inserts.
    for (; next_mark < reference.marks_after.size() && reference.marks_after[next_mark].first < word.end; ++next_mark)
      ++scores_.unscored_marks;
    int32_t label = no_mark_label_;
    if (next_mark < reference.marks_after.size() && reference.marks_after[next_mark].first == word.end) {
      const std::string& marks = reference.marks_after[next_mark++].second;
      const auto found = std::find_if(labels_.begin(), labels_.end(), [&](const Label& l) { return l.mark == marks; });
      if (found != labels_.end()) label = static_cast<int32_t>(found - labels_.begin());
      else ++scores_.unscored_marks;
    }
    gold.push_back(label);
    predicted.push_back(word.label);
    if (scores_.capitalization) add_capital(reference.clean, word);
  }
  add_labels(gold, predicted);
}

void PunctuationScorer::add_capital(std::string_view text, const PredictedWord& word) {
  char32_t first = 0;
  if (word.begin >= text.size() || decode_utf8(text, word.begin, first) == 0) return;
  const auto code = static_cast<utf8proc_int32_t>(first);
  const bool upper = utf8proc_isupper(code), lower = utf8proc_islower(code);
  if (!upper && !lower) return;
  const bool capitalized = word.label >= 0 && word.label < static_cast<int32_t>(labels_.size()) &&
                           labels_[static_cast<size_t>(word.label)].capitalize;
  MarkScore& score = *scores_.capitalization;
  if (upper && capitalized) ++score.true_positives;
  if (!upper && capitalized) ++score.false_positives;
  if (upper && !capitalized) ++score.false_negatives;
}

MarkScore micro_over(const PunctuationScores& scores, std::string_view marks) {
  MarkScore micro{"marks " + std::string(marks), std::string(marks), 0, 0, 0};
  bool any = false;
  for (const MarkScore& score : scores.per_mark) {
    if (score.mark.empty() || std::string_view(marks).find(score.mark) == std::string_view::npos) continue;
    any = true;
    micro.true_positives += score.true_positives;
    micro.false_positives += score.false_positives;
    micro.false_negatives += score.false_negatives;
  }
  if (!any) throw InvalidArgument("no label of this model inserts any of the marks '" + std::string(marks) + "'");
  return micro;
}

const PunctuationScores& PunctuationScorer::scores() {
  scores_.micro.true_positives = scores_.micro.false_positives = scores_.micro.false_negatives = 0;
  for (const auto& score : scores_.per_mark) {
    scores_.micro.true_positives += score.true_positives;
    scores_.micro.false_positives += score.false_positives;
    scores_.micro.false_negatives += score.false_negatives;
  }
  return scores_;
}

}  // namespace halfserve
