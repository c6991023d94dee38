#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/text/metrics.h"
#include "line_input.h"
#include "shipped_models.h"

namespace halfserve::cli {

namespace {

struct PrecisionResult {
  Precision precision;
  PunctuationScores scores;
  std::vector<int32_t> token_labels;  // every token of every line, for agreement with fp32
};

nlohmann::ordered_json score_json(const MarkScore& score) {
  return {{"label", score.label}, {"mark", score.mark}, {"precision", score.precision()}, {"recall", score.recall()},
          {"f1", score.f1()}, {"support", score.support()}, {"true_positives", score.true_positives},
          {"false_positives", score.false_positives}, {"false_negatives", score.false_negatives}};
}

double label_disagreement(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  if (a.empty()) return 0;
  size_t differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += a[i] != b[i];
  return static_cast<double>(differing) / static_cast<double>(a.size());
}

void print_text(const std::vector<PrecisionResult>& results, const std::string& micro_marks) {
  std::cout << std::fixed << std::setprecision(4);
  for (const auto& result : results) {
    std::cout << precision_name(result.precision) << ": " << result.scores.words << " words";
    if (result.scores.unscored_marks > 0)
      std::cout << ", " << result.scores.unscored_marks << " reference marks no label inserts (scored as no mark)";
    std::cout << "\n| mark | precision | recall | F1 | support |\n|---|---|---|---|---|\n";
    for (const auto& score : result.scores.per_mark)
      std::cout << "| " << score.mark << " (" << score.label << ") | " << score.precision() << " | " << score.recall()
                << " | " << score.f1() << " | " << score.support() << " |\n";
    const MarkScore& micro = result.scores.micro;
    std::cout << "| micro (all marks) | " << micro.precision() << " | " << micro.recall() << " | " << micro.f1() << " | "
              << micro.support() << " |\n";
    if (!micro_marks.empty()) {
      const MarkScore selected = micro_over(result.scores, micro_marks);
      std::cout << "| micro (" << micro_marks << ") | " << selected.precision() << " | " << selected.recall() << " | "
                << selected.f1() << " | " << selected.support() << " |\n";
    }
    if (const auto& capitals = result.scores.capitalization)
      std::cout << "| capitals (+U labels) | " << capitals->precision() << " | " << capitals->recall() << " | "
                << capitals->f1() << " | " << capitals->support() << " |\n";
    std::cout << "\n";
  }
  if (results.size() > 1 && results.front().precision == Precision::fp32) {
    std::cout << "| precision | micro F1 | F1 - fp32 F1 | token labels agreeing with fp32 |\n|---|---|---|---|\n";
    for (const auto& result : results)
      std::cout << "| " << precision_name(result.precision) << " | " << result.scores.micro.f1() << " | " << std::showpos
                << result.scores.micro.f1() - results.front().scores.micro.f1() << std::noshowpos << " | "
                << 100 * (1 - label_disagreement(result.token_labels, results.front().token_labels)) << " % |\n";
  }
}

}  // namespace

void add_eval_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand(
      "eval", "Score restored punctuation against reference text: per-mark precision, recall, F1, across precisions");
  struct Flags {
    ModelChoice model;
    std::string reference, precisions = "fp32";
    EngineFlags engine;
    PunctuatorOptions options;
    bool json = false;
    std::string micro_marks;
    size_t max_line_bytes = 16 << 20;
  };
  auto flags = std::make_shared<Flags>();
  flags->model.add_to(*command);
  command->add_option("--ref", flags->reference, "Reference: punctuated text, one per line")->required();
  command->add_option("--precisions", flags->precisions, "Comma-separated precisions to score (fp32 first for the comparison)");
  add_window_flags(*command, flags->options);
  command->add_flag("--json", flags->json, "Machine-readable output");
  command->add_option("--micro-marks", flags->micro_marks,
                      "Also a micro F1 over these marks only, e.g. \"，。？\" (a target stated for some marks)");
  command->add_option("--device", flags->engine.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_option("--threads", flags->engine.threads, "Intra-op threads (default: all cores)")->check(CLI::NonNegativeNumber);
  command->callback([flags, &run] {
    const std::vector<Precision> precisions = parse_precision_list(flags->precisions, "--precisions");
    run = [flags, precisions] {
      const std::string model_path = flags->model.path();
      const FrozenModel model = load_frozen_model(model_path);
      const MarkSet marks(model.metadata.labels);
      std::vector<ReferenceMarks> references;
      std::vector<std::string> clean_texts;
      LineInput input(flags->reference, flags->max_line_bytes, false);
      while (auto line = input.next()) {
        references.push_back(read_reference_marks(*line, marks));
        clean_texts.push_back(references.back().clean);
      }
      std::vector<PrecisionResult> results;
      for (const Precision precision : precisions) {
        EngineOptions engine = flags->engine.options();
        engine.precision = precision;
        const auto engine_model = BertModel::from_model(model, engine);
        std::cerr << "eval: " << engine_model->describe() << "\n";
        Punctuator punctuator(engine_model, flags->options);
        const std::vector<TextPrediction> predictions = punctuator.predict(clean_texts);
        PunctuationScorer scorer(model.metadata.labels);
        PrecisionResult result{precision, {}, {}};
        for (size_t i = 0; i < predictions.size(); ++i) {
          scorer.add(references[i], predictions[i]);
          result.token_labels.insert(result.token_labels.end(), predictions[i].token_labels.begin(),
                                     predictions[i].token_labels.end());
        }
        result.scores = scorer.scores();
        results.push_back(std::move(result));
      }
      if (!flags->json) {
        print_text(results, flags->micro_marks);
        return 0;
      }
      nlohmann::ordered_json out;
      out["model"] = model_path;
      out["reference"] = flags->reference;
      out["lines"] = references.size();
      out["results"] = nlohmann::ordered_json::array();
      for (const auto& result : results) {
        nlohmann::ordered_json entry = {{"precision", precision_name(result.precision)}, {"words", result.scores.words},
                                        {"unscored_marks", result.scores.unscored_marks},
                                        {"micro", score_json(result.scores.micro)}};
        entry["per_mark"] = nlohmann::ordered_json::array();
        for (const auto& score : result.scores.per_mark) entry["per_mark"].push_back(score_json(score));
        if (result.scores.capitalization) entry["capitalization"] = score_json(*result.scores.capitalization);
        if (!flags->micro_marks.empty()) entry["micro_marks"] = score_json(micro_over(result.scores, flags->micro_marks));
        if (results.front().precision == Precision::fp32) {
          entry["f1_minus_fp32"] = result.scores.micro.f1() - results.front().scores.micro.f1();
          const double disagreement = label_disagreement(result.token_labels, results.front().token_labels);
          entry["token_label_disagreement_with_fp32"] = disagreement;
          entry["token_label_agreement_with_fp32"] = 1 - disagreement;
        }
        out["results"].push_back(entry);
      }
      std::cout << out.dump(2) << "\n";
      return 0;
    };
  });
}

}  // namespace halfserve::cli
