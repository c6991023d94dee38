#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <utf8proc.h>

#include "halfserve/import/label_names.h"
#include "halfserve/format/bert_tensors.h"
#include "halfserve/synth/synth_model.h"
#include "halfserve/text/metrics.h"
#include "halfserve/text/punctuator.h"
#include "halfserve/util/error.h"
#include "serve/rest_punctuate.h"
#include "test_support.h"

namespace halfserve {
namespace {

// A small model over the generated 21128-token vocabulary (CJK, ASCII, ##pieces): real tokenization, fast runs.
FrozenModel small_cjk_model(uint64_t seed = 5) { return testing::tiny_model(seed, 21128, 1); }

// The same model with another head: `weights` [labels, hidden] and `bias` [labels], one row per metadata label.
FrozenModel with_head(const FrozenModel& source, std::vector<float> weights, std::vector<float> bias) {
  FrozenModel model;
  model.metadata = source.metadata;
  for (const auto& name : source.tensors.names())
    if (name.rfind("classifier.", 0) != 0) model.tensors.add_view(name, source.tensors.at(name));
  model.tensors.keep_alive(std::make_shared<TensorStore>(source.tensors));
  const auto labels = static_cast<int64_t>(bias.size());
  model.tensors.add_float(bert_names::kClassifierWeight, {labels, source.metadata.config.hidden_size}, std::move(weights));
  model.tensors.add_float(bert_names::kClassifierBias, {labels}, std::move(bias));
  return model;
}

// The same model with a head that always answers `label` (zero weights, a bias that dominates).
FrozenModel always_label(const FrozenModel& source, int32_t label) {
  const auto labels = source.metadata.labels.size(), hidden = static_cast<size_t>(source.metadata.config.hidden_size);
  std::vector<float> bias(labels, 0.0f);
  bias[static_cast<size_t>(label)] = 10.0f;
  return with_head(source, std::vector<float>(labels * hidden, 0.0f), bias);
}

// The model with other labels (the head is then replaced by always_label).
FrozenModel with_labels(FrozenModel model, const std::vector<std::string>& names) {
  model.metadata.labels.clear();
  for (const auto& name : names) model.metadata.labels.push_back(label_for_name(name));
  return model;
}
const std::vector<std::string> kCasedEnglishLabels = {"O", ",", ".", "?", "O+U", ",+U", ".+U", "?+U"};

Punctuator make(const FrozenModel& model, PunctuatorOptions options = {}) {
  return Punctuator(BertModel::from_model(model, {}), options);
}

std::string random_text(std::mt19937& random, size_t length) {
  static const std::vector<std::string> pieces = {"今", "天", "气", "很", "好", "我", "们", "去", "公", "园", "玩", "吧",
                                                  "，", "。", "？", "！", "、", " ", "  ", "hello", "world", "ing",
                                                  "3.14", "42", ",", ".", "?", "!", "e.g.", "Zoë", "（", "）", "“", "”",
                                                  ":", ";", "\t", "abc", "XYZ"};
  std::string text;
  for (size_t i = 0; i < length; ++i) text += pieces[random() % pieces.size()];
  return text;
}

// A random head over other labels (random_text then gets every label somewhere).
FrozenModel random_head(const FrozenModel& source, const std::vector<std::string>& names, uint32_t seed) {
  std::mt19937 random(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> weights(names.size() * static_cast<size_t>(source.metadata.config.hidden_size)), bias(names.size());
  for (auto& value : weights) value = normal(random);
  for (auto& value : bias) value = normal(random);
  return with_head(with_labels(source, names), std::move(weights), std::move(bias));
}

std::string fold_case(const std::string& text) {
  std::string folded;
  for (size_t at = 0; at < text.size();) {
    char32_t code = 0;
    const size_t length = decode_utf8(text, at, code);
    if (length == 0) return folded + text.substr(at);
    utf8proc_uint8_t bytes[4];
    const auto written = utf8proc_encode_char(utf8proc_tolower(static_cast<utf8proc_int32_t>(code)), bytes);
    folded.append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(written));
    at += length;
  }
  return folded;
}

TEST(PunctuatorTest, NothingIsLost) {
  const FrozenModel model = small_cjk_model();
  for (const bool keep_existing : {false, true}) {
    Punctuator punctuator = make(model, {12, 4, 8, keep_existing});  // small windows: many overlaps
    std::mt19937 random(keep_existing ? 2 : 1);
    std::vector<std::string> texts;
    for (int i = 0; i < 300; ++i) texts.push_back(random_text(random, random() % 40));
    texts.push_back("");
    texts.push_back("。。。，，");
    const auto outputs = punctuator.punctuate(texts);
    ASSERT_EQ(outputs.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i)
      ASSERT_EQ(punctuator.marks().strip(outputs[i]), punctuator.marks().strip(texts[i]))
          << "input: " << texts[i] << "\noutput: " << outputs[i];
  }
}

// With capitalizing labels the same holds once case is folded; and capitals are the only other change.
TEST(PunctuatorTest, NothingIsLostWithCapitals) {
  const FrozenModel model = random_head(small_cjk_model(), kCasedEnglishLabels, 7);
  for (const bool keep_existing : {false, true}) {
    Punctuator punctuator = make(model, {12, 4, 8, keep_existing});
    std::mt19937 random(keep_existing ? 4 : 3);
    std::vector<std::string> texts;
    for (int i = 0; i < 300; ++i) texts.push_back(random_text(random, random() % 40));
    const auto outputs = punctuator.punctuate(texts);
    size_t capitalized = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::string in = punctuator.marks().strip(texts[i]), out = punctuator.marks().strip(outputs[i]);
      ASSERT_EQ(fold_case(out), fold_case(in)) << "input: " << texts[i] << "\noutput: " << outputs[i];
      capitalized += out != in;
    }
    EXPECT_GT(capitalized, 10u);  // the random head does capitalize
  }
}

TEST(PunctuatorTest, MarksGoAfterWholeWordsAndNeverDouble) {
  const FrozenModel model = always_label(small_cjk_model(), 1);  // label 1 = "，"
  Punctuator punctuator = make(model);
  EXPECT_EQ(punctuator.punctuate({"今天天气"})[0], "今，天，天，气，");
  // "hello" is one word of several pieces: one mark, after its last piece; English spacing stays as it was.
  EXPECT_EQ(punctuator.punctuate({"hello  world"})[0], "hello，  world，");
  // Existing marks are removed first by default...
  EXPECT_EQ(punctuator.punctuate({"今，天。"})[0], "今，天，");
  // ...or kept, and then never doubled; nothing follows kept punctuation inside a number.
  Punctuator keeping = make(model, {0, 0, 32, true});
  EXPECT_EQ(keeping.punctuate({"今，天"})[0], "今，天，");
  EXPECT_EQ(keeping.punctuate({"3.14"})[0], "3.14，");
  EXPECT_EQ(punctuator.punctuate({""})[0], "");
  EXPECT_EQ(punctuator.punctuate({"。？！"})[0], "");
}

TEST(PunctuatorTest, LongTextsTakeEachLabelFromTheMostCentralWindow) {
  const FrozenModel model = small_cjk_model(9);
  const auto engine = BertModel::from_model(model, {});
  const int64_t window = 18, stride = 5, content = window - 2;
  Punctuator punctuator(engine, {window, stride, 4, false});
  std::mt19937 random(3);
  std::string text;
  for (int i = 0; i < 120; ++i) text += std::vector<std::string>{"今", "天", "气", "很", "好", "我", "们", "去"}[random() % 8];
  const TextPrediction prediction = punctuator.predict({text})[0];
  const size_t tokens = prediction.tokens.size();
  ASSERT_EQ(tokens, 120u);

  // The documented plan: windows every `stride` tokens, the last one ending with the text.
  std::vector<size_t> starts;
  for (size_t start = 0;; start += stride) {
    starts.push_back(std::min(start, tokens - static_cast<size_t>(content)));
    if (start + content >= tokens) break;
  }
  BertTokenizer tokenizer(model.metadata.tokenizer);
  Workspace workspace;
  std::vector<std::vector<int32_t>> direct;  // each window's labels from its own model call
  for (const size_t first : starts) {
    InputBatch in;
    in.batch = 1;
    in.length = window;
    in.input_ids.push_back(tokenizer.cls_id());
    for (size_t i = first; i < first + content; ++i) in.input_ids.push_back(prediction.tokens[i].id);
    in.input_ids.push_back(tokenizer.sep_id());
    direct.push_back(engine->run(in, {false, true, false, false}, workspace).label_ids);
  }
  size_t checked = 0;
  for (size_t i = 0; i < tokens; ++i) {
    // The window whose centre is strictly nearest (ties are left out: either window is right).
    std::vector<std::pair<double, size_t>> distances;
    for (size_t w = 0; w < starts.size(); ++w)
      if (starts[w] <= i && i < starts[w] + content)
        distances.emplace_back(std::fabs(static_cast<double>(i) - (starts[w] + (content - 1) / 2.0)), w);
    std::sort(distances.begin(), distances.end());
    if (distances.size() > 1 && distances[0].first == distances[1].first) continue;
    const size_t w = distances[0].second;
    EXPECT_EQ(prediction.token_labels[i], direct[w][i - starts[w] + 1]) << "token " << i;
    ++checked;
  }
  EXPECT_GT(checked, 80u);
}

TEST(PunctuatorTest, BadInputsAndLongLines) {
  Punctuator punctuator = make(small_cjk_model(), {0, 0, 64, false});
  EXPECT_THROW(punctuator.punctuate({std::string("ab\xff", 3)}), InvalidArgument);
  std::string line;
  while (line.size() < (1 << 20)) line += "今天天气很好我们去公园玩吧 hello world ";
  const auto output = punctuator.punctuate({line})[0];
  EXPECT_EQ(punctuator.marks().strip(output), punctuator.marks().strip(line));
  EXPECT_THROW(Punctuator(BertModel::from_model(small_cjk_model(), {}), {100, 0, 1, false}), InvalidArgument);
}

TEST(PunctuatorTest, StrideBelowAQuarterWindowIsRefused) {
  // Stride 1 would run every token through every window that covers it: 3 KB of text once took 45 s.
  const auto engine = BertModel::from_model(small_cjk_model(), {});
  try {
    Punctuator(engine, {18, 3, 4, false});  // 16 content tokens: the stride must be 4..16
    FAIL() << "stride 3 of a 16-token window accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_TRUE(testing::Contains(e.what(), "stride 3 must be between 4 (a quarter of the window) and the window's 16"));
  }
  EXPECT_NO_THROW(Punctuator(engine, {18, 4, 4, false}));
  EXPECT_NO_THROW(Punctuator(engine, {18, 16, 4, false}));
}

TEST(PunctuationMetricsTest, ReferenceMarksBelongToTheWordBefore) {
  const MarkSet marks(seed_punctuation_labels());
  const ReferenceMarks reference = read_reference_marks("你好，世界。 hello , world!? 3.14", marks);
  EXPECT_EQ(reference.clean, "你好世界 hello  world 3.14");
  ASSERT_EQ(reference.marks_after.size(), 4u);
  EXPECT_EQ(reference.marks_after[0], (std::pair<size_t, std::string>{6, "，"}));
  EXPECT_EQ(reference.marks_after[1], (std::pair<size_t, std::string>{12, "。"}));
  EXPECT_EQ(reference.marks_after[2], (std::pair<size_t, std::string>{18, ","}));
  EXPECT_EQ(reference.marks_after[3], (std::pair<size_t, std::string>{25, "!?"}));
}

TEST(PunctuationMetricsTest, HandCountedScores) {
  const std::vector<Label> labels = seed_punctuation_labels();  // O ， 。 ？ ！ 、
  PunctuationScorer scorer(labels);
  //            gold:      O  ，  。  O  ？  ，
  //            predicted: ，  ，  O  O  ？  。
  scorer.add_labels({0, 1, 2, 0, 3, 1}, {1, 1, 0, 0, 3, 2});
  const PunctuationScores& scores = scorer.scores();
  const MarkScore& comma = scores.per_mark[0];
  EXPECT_EQ(comma.mark, "，");
  EXPECT_EQ(comma.true_positives, 1);
  EXPECT_EQ(comma.false_positives, 1);
  EXPECT_EQ(comma.false_negatives, 1);
  EXPECT_DOUBLE_EQ(comma.precision(), 0.5);
  EXPECT_DOUBLE_EQ(comma.recall(), 0.5);
  const MarkScore& period = scores.per_mark[1];
  EXPECT_EQ(period.true_positives, 0);
  EXPECT_EQ(period.false_positives, 1);
  EXPECT_EQ(period.false_negatives, 1);
  EXPECT_DOUBLE_EQ(period.f1(), 0.0);
  EXPECT_EQ(scores.per_mark[2].true_positives, 1);  // ？
  EXPECT_EQ(scores.micro.true_positives, 2);
  EXPECT_EQ(scores.micro.false_positives, 2);
  EXPECT_EQ(scores.micro.false_negatives, 2);
  EXPECT_DOUBLE_EQ(scores.micro.f1(), 0.5);
  EXPECT_EQ(scores.words, 6);
  // A micro score over some marks only (eval --micro-marks): ， and 。 are 1 hit, 2 false alarms, 2 misses.
  const MarkScore commas_and_periods = micro_over(scores, "，。");
  EXPECT_EQ(commas_and_periods.true_positives, 1);
  EXPECT_EQ(commas_and_periods.false_positives, 2);
  EXPECT_EQ(commas_and_periods.false_negatives, 2);
  EXPECT_DOUBLE_EQ(commas_and_periods.f1(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(micro_over(scores, "？").f1(), 1.0);
  EXPECT_THROW(micro_over(scores, "!"), InvalidArgument);
}

TEST(PunctuatorTest, CapitalizingLabelsUpperCaseOnlyTheFirstLetter) {
  const FrozenModel cased = with_labels(small_cjk_model(), kCasedEnglishLabels);
  Punctuator capitals = make(always_label(cased, 4));  // "O+U"
  EXPECT_EQ(capitals.punctuate({"hello world"})[0], "Hello World");
  Punctuator periods = make(always_label(cased, 6));  // ".+U"
  // First letters only ("iphone" -> "Iphone", never "IPHONE"); a word with no letter first keeps its text; the
  // input's own capitals stay; marks still follow the rules above (none inside "3.14").
  EXPECT_EQ(periods.punctuate({"hello  zoë, iphone 42 XYZ 3.14"})[0], "Hello.  Zoë. Iphone. 42. XYZ. 3.14.");
  EXPECT_EQ(periods.punctuate({"émile"})[0], "Émile.");
  Punctuator plain = make(always_label(cased, 2));  // "." without capitals
  EXPECT_EQ(plain.punctuate({"hello World"})[0], "hello. World.");
}

// The REST :punctuate reply and `inspect --json` say which labels capitalize.
TEST(PunctuatorTest, CapitalizingLabelsAreNamedInRestRepliesAndInspect) {
  const FrozenModel model = always_label(with_labels(small_cjk_model(), kCasedEnglishLabels), 5);  // ",+U"
  const auto engine = BertModel::from_model(model, {});
  const auto tokenizer = std::make_shared<const BertTokenizer>(model.metadata.tokenizer);
  auto workspace = std::make_shared<Workspace>();
  const ModelRunner run = [&](const InputBatch& in, const OutputSelection& out) { return engine->run(in, out, *workspace); };
  const auto reply = nlohmann::json::parse(
      rest::punctuate_json(R"({"text": "hello world", "labels": true})", model.metadata, tokenizer, run));
  EXPECT_EQ(reply["text"], "Hello, World,");
  ASSERT_FALSE(reply["tokens"].empty());
  EXPECT_EQ(reply["tokens"][0]["label"], ",+U");
  EXPECT_EQ(reply["tokens"][0]["mark"], ",");
  EXPECT_EQ(reply["tokens"][0]["capitalize"], true);

  testing::TempDir dir;
  save_frozen_model(model, (dir / "cased.safetensors").string());
  const auto inspect = testing::run_cli("inspect --json '" + (dir / "cased.safetensors").string() + "'");
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  const auto labels = nlohmann::json::parse(inspect.out)["labels"];
  EXPECT_FALSE(labels[1].contains("capitalize"));
  EXPECT_EQ(labels[5]["capitalize"], true);
}

// Scores `model` on one reference text, as `halfserve eval` does.
PunctuationScores score_against(const FrozenModel& model, std::string_view reference_text) {
  Punctuator punctuator = make(model);
  const ReferenceMarks reference = read_reference_marks(reference_text, punctuator.marks());
  const auto predictions = punctuator.predict({reference.clean});
  PunctuationScorer scorer(model.metadata.labels);
  scorer.add(reference, predictions[0]);
  return scorer.scores();
}

TEST(PunctuationMetricsTest, MarksWhereNoWordEndsAreCountedUnscored) {
  const FrozenModel model = always_label(small_cjk_model(), 2);  // "。"
  // Stripped, "apt，dpkg" reads as the one word "aptdpkg": its "，" follows no word end.
  const PunctuationScores scores = score_against(model, "apt，dpkg ok。");
  EXPECT_EQ(scores.words, 2);
  EXPECT_EQ(scores.unscored_marks, 1);
  EXPECT_EQ(scores.per_mark[1].true_positives, 1);   // ok。
  EXPECT_EQ(scores.per_mark[1].false_positives, 1);  // aptdpkg。
  EXPECT_EQ(scores.per_mark[0].false_negatives, 0);  // the glued "，" is not held against the model
}

TEST(PunctuationMetricsTest, CapitalsAreScoredApartFromMarks) {
  const FrozenModel model = always_label(with_labels(small_cjk_model(), kCasedEnglishLabels), 5);  // ",+U"
  const PunctuationScores scores = score_against(model, "Hello, world. Yes 42");
  ASSERT_EQ(scores.per_mark.size(), 3u);  // , . ? once each: ",+U" is scored as ","
  EXPECT_EQ(scores.per_mark[0].mark, ",");
  EXPECT_EQ(scores.per_mark[0].true_positives, 1);   // hello
  EXPECT_EQ(scores.per_mark[0].false_positives, 3);  // world (gold "."), yes, 42
  EXPECT_EQ(scores.per_mark[1].false_negatives, 1);  // world's "."
  ASSERT_TRUE(scores.capitalization.has_value());
  // Hello and Yes start with capitals, world does not, 42 has no letter to count.
  EXPECT_EQ(scores.capitalization->true_positives, 2);
  EXPECT_EQ(scores.capitalization->false_positives, 1);
  EXPECT_EQ(scores.capitalization->false_negatives, 0);

  PunctuationScorer uncased(small_cjk_model().metadata.labels);
  EXPECT_FALSE(uncased.scores().capitalization.has_value());
}

TEST(PunctuationMetricsTest, ScoresAModelThatAlwaysSaysComma) {
  const PunctuationScores scores = score_against(always_label(small_cjk_model(), 1), "你好，世界。");
  // Words 你 好 世 界: gold O ， O 。, predicted ， everywhere.
  EXPECT_EQ(scores.per_mark[0].true_positives, 1);
  EXPECT_EQ(scores.per_mark[0].false_positives, 3);
  EXPECT_EQ(scores.per_mark[0].false_negatives, 0);
  EXPECT_EQ(scores.per_mark[1].false_negatives, 1);
  EXPECT_DOUBLE_EQ(scores.micro.precision(), 0.25);
  EXPECT_DOUBLE_EQ(scores.micro.recall(), 0.5);
}

TEST(PunctuateCliTest, LinesInLinesOutAndClearErrors) {
  testing::TempDir dir;
  const auto path = dir / "model.safetensors";
  save_frozen_model(always_label(small_cjk_model(), 2), path.string());  // always "。"
  const auto ok = testing::run_cli("punctuate --model '" + path.string() + "'", "今天\n\n好，吧\n");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "今。天。\n\n好。吧。\n");
  const auto bad = testing::run_cli("punctuate --model '" + path.string() + "'", "今天\nab\xff\n");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(testing::Contains(bad.err, "line 2 is not valid UTF-8"));
  const auto replaced = testing::run_cli("punctuate --replace-invalid --model '" + path.string() + "'", "ab\xff\n");
  EXPECT_EQ(replaced.exit_code, 0) << replaced.err;
  EXPECT_EQ(replaced.out, "ab。\xEF\xBF\xBD\n");

  std::ofstream(dir / "reference.txt") << "你好，世界。\n今天。\n";
  const auto eval = testing::run_cli("eval --json --precisions fp32,bf16 --model '" + path.string() + "' --ref '" +
                                     (dir / "reference.txt").string() + "'");
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const auto report = nlohmann::json::parse(eval.out);
  ASSERT_EQ(report["results"].size(), 2u);
  const auto& micro = report["results"][0]["micro"];
  // 6 words, gold marks after 好 (，), 界 (。), 天 (。); predicted 。 after every word.
  EXPECT_EQ(micro["true_positives"], 2);
  EXPECT_EQ(micro["false_positives"], 4);
  EXPECT_EQ(micro["false_negatives"], 1);
  EXPECT_DOUBLE_EQ(report["results"][1]["token_label_disagreement_with_fp32"].get<double>(), 0.0);
}

// The shipped models are found relative to the binary: beside it (a build tree) or under ../share (an install).
TEST(PunctuateCliTest, FindsTheShippedModelRelativeToTheBinary) {
  testing::TempDir dir;
  const auto installed = dir / "prefix" / "bin" / "halfserve";
  const auto beside = dir / "bundle" / "halfserve";
  const auto shared_models = dir / "prefix" / "share" / "halfserve" / "models";
  for (const auto& binary : {installed, beside}) {
    std::filesystem::create_directories(binary.parent_path());
    std::filesystem::copy_file(HALFSERVE_CLI_PATH, binary);
  }
  std::filesystem::create_directories(shared_models);
  std::filesystem::create_directories(dir / "bundle" / "models");
  save_frozen_model(always_label(small_cjk_model(), 2), (shared_models / "punct-zh-int8.safetensors").string());
  save_frozen_model(always_label(small_cjk_model(), 1), (dir / "bundle" / "models" / "punct-en-int8.safetensors").string());

  const auto zh = testing::run_binary(installed.string(), "punctuate", "今天\n");
  ASSERT_EQ(zh.exit_code, 0) << zh.err;
  EXPECT_EQ(zh.out, "今。天。\n");
  const auto en = testing::run_binary(beside.string(), "punctuate --language en", "今天\n");
  ASSERT_EQ(en.exit_code, 0) << en.err;
  EXPECT_EQ(en.out, "今，天，\n");

  const auto missing = testing::run_binary(beside.string(), "punctuate", "今天\n");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(testing::Contains(missing.err, "the shipped zh model is not installed")) << missing.err;
  EXPECT_TRUE(testing::Contains(missing.err, (dir / "bundle" / "models" / "punct-zh-int8.safetensors").string()))
      << missing.err;
  const auto both = testing::run_binary(beside.string(), "punctuate --language en --model x.safetensors", "");
  EXPECT_EQ(both.exit_code, 2);
  const auto unknown = testing::run_binary(beside.string(), "punctuate --language fr", "");
  EXPECT_EQ(unknown.exit_code, 2);
  const auto empty = testing::run_binary(beside.string(), "eval --model '' --ref x.txt", "");
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_TRUE(testing::Contains(empty.err, "--model names no file")) << empty.err;
}

}  // namespace
}  // namespace halfserve
