#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "halfserve/format/model_metadata.h"
#include "halfserve/text/punctuation.h"
#include "halfserve/text/punctuator.h"

namespace halfserve {

struct MarkScore {
  std::string label;
  std::string mark;
  int64_t true_positives = 0;
  int64_t false_positives = 0;
  int64_t false_negatives = 0;
  double precision() const;
  double recall() const;
  double f1() const;
  int64_t support() const { return true_positives + false_negatives; }
};

struct PunctuationScores {
  std::vector<MarkScore> per_mark;  // every mark a label inserts, in label order (",+U" counts as ",")
  MarkScore micro;                  // summed over all marks
  // For models with capitalizing labels ("+U"): words the reference starts with an upper-case letter, against
  // words the model capitalizes (words that start with no cased letter are not counted).
  std::optional<MarkScore> capitalization;
  int64_t words = 0;
  int64_t unscored_marks = 0;       // reference marks no label inserts, or where no word ends (counted as no mark)
};

// Micro precision/recall/F1 over the marks among `marks` only (each code point of it is one mark, e.g. "，。？"), summed
// from per_mark: how a target stated for some marks is measured. Throws InvalidArgument when no label inserts any.
MarkScore micro_over(const PunctuationScores& scores, std::string_view marks);

// Counts, word by word, the model's marks against the reference's. A word's gold label is the label whose mark
// equals the marks that follow it in the reference; the "no mark" label where nothing follows. With capitalizing
// labels it also scores capitals: the reference's case against the model's "+U" (`add` only: it needs the text).
class PunctuationScorer {
 public:
  explicit PunctuationScorer(const std::vector<Label>& labels);
  // `prediction` must come from predicting `reference.clean`.
  void add(const ReferenceMarks& reference, const TextPrediction& prediction);
  // Direct form: gold and predicted label ids per word.
  void add_labels(const std::vector<int32_t>& gold, const std::vector<int32_t>& predicted);
  const PunctuationScores& scores();

 private:
  void add_capital(std::string_view text, const PredictedWord& word);

  std::vector<Label> labels_;
  int32_t no_mark_label_ = -1;
  PunctuationScores scores_;
};

}  // namespace halfserve
