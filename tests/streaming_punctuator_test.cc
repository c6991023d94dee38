// StreamingPunctuator: whatever the pieces, its commits add up to Punctuator's offline output for the whole text;
// words are committed as soon as the offline windows that decide them are certain; state stays bounded.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "halfserve/format/bert_tensors.h"
#include "halfserve/import/label_names.h"
#include "halfserve/text/streaming_punctuator.h"
#include "halfserve/util/error.h"
#include "test_support.h"

namespace halfserve {
namespace {

// The tiny model (generated 21128-token vocabulary: CJK, ASCII, ## pieces) with a random head over `names`, so
// every label shows up somewhere.
FrozenModel tiny_with_random_head(const std::vector<std::string>& names, uint32_t seed) {
  const FrozenModel source = testing::tiny_model(5, 21128, 1);
  FrozenModel model;
  model.metadata = source.metadata;
  model.metadata.labels.clear();
  for (const auto& name : names) model.metadata.labels.push_back(label_for_name(name));
  for (const auto& name : source.tensors.names())
    if (name.rfind("classifier.", 0) != 0) model.tensors.add_view(name, source.tensors.at(name));
  model.tensors.keep_alive(std::make_shared<TensorStore>(source.tensors));
  std::mt19937 random(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto hidden = source.metadata.config.hidden_size;
  std::vector<float> weights(names.size() * static_cast<size_t>(hidden)), bias(names.size());
  for (auto& value : weights) value = normal(random);
  for (auto& value : bias) value = normal(random);
  model.tensors.add_float(bert_names::kClassifierWeight, {static_cast<int64_t>(names.size()), hidden}, weights);
  model.tensors.add_float(bert_names::kClassifierBias, {static_cast<int64_t>(names.size())}, bias);
  return model;
}

// A stand-in for a model, fast enough for long streams: each token's label mixes its id, its place in the window and
// the window's first token, so the same token gets different labels in different windows and only the right
// window gives the offline answer. Probabilities follow from the same mix.
OutputBatch context_hash_model(const InputBatch& in, size_t labels) {
  OutputBatch out;
  out.batch = in.batch;
  out.length = in.length;
  for (int64_t row = 0; row < in.batch; ++row) {
    const int32_t* ids = in.input_ids.data() + row * in.length;
    for (int64_t i = 0; i < in.length; ++i) {
      const uint64_t mix = static_cast<uint64_t>(ids[i]) * 2654435761u + static_cast<uint64_t>(i) * 40503u +
                           static_cast<uint64_t>(ids[1]) * 977u;
      const auto label = static_cast<int32_t>((mix >> 7) % labels);
      out.label_ids.push_back(label);
      const float top = 0.5f + static_cast<float>(mix % 97) / 200.0f;
      for (size_t l = 0; l < labels; ++l)
        out.probabilities.push_back(l == static_cast<size_t>(label) ? top : (1.0f - top) / static_cast<float>(labels - 1));
    }
  }
  return out;
}

const std::vector<std::string> kChineseLabels = {"O", "，", "。", "？", "！", "、"};
const std::vector<std::string> kCasedEnglishLabels = {"O", ",", ".", "?", "O+U", ",+U", ".+U", "?+U"};

// A model, its tokenizer, and a runner that counts the windows (rows) it runs.
struct Engine {
  explicit Engine(std::shared_ptr<const BertModel> loaded)
      : model(std::move(loaded)), tokenizer(std::make_shared<const BertTokenizer>(model->metadata().tokenizer)) {}
  explicit Engine(const FrozenModel& frozen) : Engine(BertModel::from_model(frozen, {})) {}

  ModelRunner runner() {
    return [this](const InputBatch& in, const OutputSelection& out) {
      if (fail_next) {
        fail_next = false;
        throw Error("model call failed");
      }
      rows += in.batch;
      if (hashed) return context_hash_model(in, model->metadata().labels.size());
      return model->run(in, out, *workspace);
    };
  }
  Punctuator offline(int64_t window, int64_t stride) {
    return Punctuator(model->metadata(), tokenizer, runner(), {window, stride, 32, false});
  }
  StreamingPunctuator stream(int64_t window, int64_t stride) {
    return StreamingPunctuator(model->metadata(), tokenizer, runner(), {window, stride, 32});
  }

  std::shared_ptr<const BertModel> model;
  std::shared_ptr<const BertTokenizer> tokenizer;
  std::shared_ptr<Workspace> workspace = std::make_shared<Workspace>();
  int64_t rows = 0;
  bool hashed = false;  // run context_hash_model instead of the model
  bool fail_next = false;  // the next call throws
};

// Text with what makes streaming hard: CJK next to Latin, marks that stay inside words ("3.14", "e.g."), marks
// that go, runs and kinds of whitespace, combining accents, special tokens, 4-byte characters, control characters,
// words over 100 characters (one [UNK]), Hangul.
std::string random_text(std::mt19937& random, size_t pieces) {
  static const std::vector<std::string> kPieces = {
      "今", "天", "气", "很", "好", "我", "们", "去", "公", "园", "玩", "吧", "的", "是", "，", "。", "？", "！", "、",
      "；", "：", " ", " ", " ", "  ", "\t", "\n", "\xE3\x80\x80", "\xC2\xA0", "hello", "world", "ing", "Straße",
      "3.14", "42", "e.g.", ",", ".", "?", "!", ";", ":", "a.b", "Zoë", "e\xCC\x81", "\xCC\x81", "（", "）", "“", "”",
      "[UNK]", "[CLS]", "[", "]", "UNK", "\x01", "\xF0\x9F\x98\x80", "한국어", "ǆemal", "don't", "-", "...", "iPhone",
      std::string(120, 'x')};
  std::string text;
  for (size_t i = 0; i < pieces; ++i) text += kPieces[random() % kPieces.size()];
  return text;
}

// `text` cut at random byte positions (UTF-8 characters too) into about `cuts` + 1 pieces, some empty.
std::vector<std::string> random_pieces(std::mt19937& random, const std::string& text, size_t cuts) {
  std::vector<size_t> at{0, text.size()};
  for (size_t i = 0; i < cuts; ++i) at.push_back(text.empty() ? 0 : random() % (text.size() + 1));
  std::sort(at.begin(), at.end());
  std::vector<std::string> pieces;
  for (size_t i = 0; i + 1 < at.size(); ++i) pieces.push_back(text.substr(at[i], at[i + 1] - at[i]));
  return pieces;
}

struct Streamed {
  std::string text;
  std::vector<CommittedWord> words;
};

Streamed stream_pieces(StreamingPunctuator& stream, const std::vector<std::string>& pieces) {
  Streamed out;
  auto take = [&](StreamCommit commit) {
    out.text += commit.text;
    for (auto& word : commit.words) out.words.push_back(std::move(word));
  };
  for (const auto& piece : pieces) take(stream.append(piece));
  take(stream.flush());
  return out;
}

// Punctuator's plan and choice for a text of n tokens, written out again: for each token, the window (first, count)
// it takes its label from.
std::vector<std::pair<int64_t, int64_t>> offline_deciders(int64_t n, int64_t window, int64_t stride) {
  std::vector<std::pair<int64_t, int64_t>> windows;
  for (int64_t first = 0; n > 0; first += stride) {
    if (first + window >= n) {
      const int64_t last = std::max<int64_t>(0, n - window);
      windows.emplace_back(last, n - last);
      break;
    }
    windows.emplace_back(first, window);
  }
  std::vector<std::pair<int64_t, int64_t>> deciders;
  size_t best = 0;
  auto distance = [&](size_t w, int64_t t) {
    return std::fabs(static_cast<double>(t) - (static_cast<double>(windows[w].first) + (windows[w].second - 1) / 2.0));
  };
  for (int64_t t = 0; t < n; ++t) {
    while (best + 1 < windows.size() && windows[best + 1].first <= t && distance(best + 1, t) < distance(best, t)) ++best;
    deciders.push_back(windows[best]);
  }
  return deciders;
}

// The rule by brute force: the tokens (a prefix) whose deciding window is the same for every text length from
// `received` on.
int64_t settled_by_brute_force(int64_t received, int64_t window, int64_t stride) {
  const auto now = offline_deciders(received, window, stride);
  int64_t settled = received;
  for (int64_t n = received + 1; n <= received + 2 * window + 2 * stride + 4; ++n) {
    const auto later = offline_deciders(n, window, stride);
    for (int64_t t = 0; t < settled; ++t)
      if (later[static_cast<size_t>(t)] != now[static_cast<size_t>(t)]) settled = t;
  }
  return settled;
}

TEST(StreamingRuleTest, ClosedFormMatchesBruteForce) {
  // Every (window, stride) with 1 <= stride <= window, not only those Punctuator accepts.
  for (int64_t window = 1; window <= 20; ++window) {
    for (int64_t stride = 1; stride <= window; ++stride) {
      const int64_t horizon = 4 * window + 4 * stride;
      const int64_t longest = horizon + 2 * window + 2 * stride + 8;
      std::vector<std::vector<std::pair<int64_t, int64_t>>> deciders(static_cast<size_t>(longest + 1));
      for (int64_t n = 0; n <= longest; ++n) deciders[static_cast<size_t>(n)] = offline_deciders(n, window, stride);
      int64_t max_wait = 0;
      for (int64_t t = 0; t < horizon; ++t) {
        // The fewest tokens received after which the token's deciding window never changes.
        int64_t needed = longest;
        while (needed > t + 1 && deciders[static_cast<size_t>(needed - 1)][static_cast<size_t>(t)] ==
                                     deciders[static_cast<size_t>(longest)][static_cast<size_t>(t)])
          --needed;
        ASSERT_EQ(StreamingPunctuator::tokens_needed(t, window, stride), needed)
            << "window " << window << " stride " << stride << " token " << t;
        ASSERT_EQ(deciders[static_cast<size_t>(longest)][static_cast<size_t>(t)].first,
                  StreamingPunctuator::deciding_window(t, window, stride) * stride);
        max_wait = std::max(max_wait, needed - t - 1);
      }
      EXPECT_EQ(max_wait, window - 1) << "window " << window << " stride " << stride;
    }
  }
}

struct WindowStride {
  int64_t window, stride;  // as PunctuatorOptions: the window counts [CLS] and [SEP]
};
// stride == the window's content (18: 16 content tokens), stride 1 (only windows of up to 4 content tokens allow
// it), a one-token window, the usual quarter and half strides, the tiny model's whole 64 positions.
const std::vector<WindowStride> kWindowStrides = {{3, 1}, {6, 1}, {6, 4}, {9, 2}, {18, 16}, {18, 5}, {34, 8}, {64, 31}, {64, 16}};

// Generated texts in random pieces, through the tiny model and through context_hash_model.
TEST(StreamingPunctuatorTest, RandomPiecesGiveTheOfflineOutput) {
  Engine engine(tiny_with_random_head(kChineseLabels, 11));
  std::mt19937 random(1);
  for (const auto& [window, stride] : kWindowStrides) for (const bool hashed : {false, true}) {
    engine.hashed = hashed;
    Punctuator offline = engine.offline(window, stride);
    StreamingPunctuator stream = engine.stream(window, stride);  // one stream for every text: flush starts anew
    for (int i = 0; i < (hashed ? 100 : 40); ++i) {
      const std::string text = random_text(random, i % 10 == 0 ? 300 : random() % 60);
      const auto pieces = random_pieces(random, text, random() % 2 == 0 ? random() % 8 : text.size() / 2);
      engine.rows = 0;
      const TextPrediction expected = offline.predict({text})[0];
      const std::string expected_text = offline.render(expected);
      const int64_t offline_windows = engine.rows;
      engine.rows = 0;
      const Streamed streamed = stream_pieces(stream, pieces);
      const std::string context = "window " + std::to_string(window) + " stride " + std::to_string(stride) +
                                  (hashed ? " (hash model)" : "") + "\ntext: " + text;
      ASSERT_EQ(streamed.text, expected_text) << context;
      EXPECT_EQ(engine.rows, offline_windows) << "every window runs once\n" << context;
      // The words, their labels, and the marks actually inserted (their bytes are what the output adds).
      ASSERT_EQ(streamed.words.size(), expected.words.size()) << context;
      size_t mark_bytes = 0;
      for (size_t w = 0; w < expected.words.size(); ++w) {
        const PredictedWord& word = expected.words[w];
        EXPECT_EQ(streamed.words[w].text, expected.clean.substr(word.begin, word.end - word.begin)) << context;
        EXPECT_EQ(streamed.words[w].label, engine.model->metadata().labels[static_cast<size_t>(word.label)].name);
        EXPECT_GE(streamed.words[w].probability, 1.0f / 6);
        EXPECT_LE(streamed.words[w].probability, 1.0f);
        if (!streamed.words[w].mark.empty()) {
          EXPECT_EQ(streamed.words[w].mark, engine.model->metadata().labels[static_cast<size_t>(word.label)].mark);
        }
        mark_bytes += streamed.words[w].mark.size();
      }
      EXPECT_EQ(mark_bytes, expected_text.size() - expected.clean.size()) << context;
      EXPECT_EQ(stream.buffered_bytes(), 0u);
    }
  }
}

TEST(StreamingPunctuatorTest, CapitalizingModelsGiveTheOfflineOutput) {
  Engine engine(tiny_with_random_head(kCasedEnglishLabels, 7));
  std::mt19937 random(2);
  for (const auto& [window, stride] : {WindowStride{18, 4}, WindowStride{34, 16}}) {
    Punctuator offline = engine.offline(window, stride);
    StreamingPunctuator stream = engine.stream(window, stride);
    size_t capitalized = 0;
    for (int i = 0; i < 40; ++i) {
      const std::string text = random_text(random, random() % 80);
      const Streamed streamed = stream_pieces(stream, random_pieces(random, text, random() % 20));
      const std::string expected = offline.punctuate({text})[0];
      ASSERT_EQ(streamed.text, expected) << "text: " << text;
      for (const auto& word : streamed.words) capitalized += word.label.find("+U") != std::string::npos;
    }
    EXPECT_GT(capitalized, 10u);
  }
}

TEST(StreamingPunctuatorTest, WordsAreCommittedAsSoonAsTheirWindowsAreCertain) {
  Engine engine(tiny_with_random_head(kChineseLabels, 3));
  engine.hashed = true;
  const MarkSet marks(engine.model->metadata().labels);
  std::mt19937 random(4);
  // Chinese with marks and spaces, appended one character at a time: every token is a word, complete on arrival.
  static const std::vector<std::string> kUnits = {"今", "天", "气", "很", "好", "我", "们", "去", "公", "园", "，", "。", " "};
  for (const auto& [window, stride] : {WindowStride{6, 1}, WindowStride{9, 2}, WindowStride{18, 16}, WindowStride{34, 8},
                                       WindowStride{64, 16}, WindowStride{64, 31}}) {
    StreamingPunctuator stream = engine.stream(window, stride);
    const int64_t content = window - 2;
    EXPECT_EQ(stream.max_lookahead_tokens(), content - 1);
    std::string received, committed;
    int64_t most_waiting = 0;
    for (int i = 0; i < 400; ++i) {
      const std::string& unit = kUnits[random() % kUnits.size()];
      received += unit;
      committed += stream.append(unit).text;
      const auto tokens = static_cast<int64_t>(engine.tokenizer->tokenize(marks.strip(received)).size());
      ASSERT_EQ(stream.tokens_received(), tokens);
      // Exactly the settled tokens are committed: none before its windows are certain, none later.
      ASSERT_EQ(stream.tokens_committed(), settled_by_brute_force(tokens, content, stride))
          << "window " << window << " stride " << stride << " after " << tokens << " tokens";
      most_waiting = std::max(most_waiting, tokens - stream.tokens_committed());
    }
    EXPECT_LE(most_waiting, content);  // a token waits for at most window - 1 after it
    EXPECT_GT(stream.tokens_committed(), 200);
    // What was committed is where the offline output begins.
    const std::string expected = engine.offline(window, stride).punctuate({received})[0];
    ASSERT_EQ(expected.compare(0, committed.size(), committed), 0);
    EXPECT_EQ(committed + stream.flush().text, expected);
  }
}

TEST(StreamingPunctuatorTest, StateStaysBoundedByTheWindow) {
  Engine engine(tiny_with_random_head(kChineseLabels, 5));
  engine.hashed = true;
  const int64_t window = 34, stride = 8, content = window - 2;
  StreamingPunctuator stream = engine.stream(window, stride);
  std::mt19937 random(6);
  std::string text;
  static const std::vector<std::string> kWords = {"今天", "天气", "很好", "我们", "去", "公园", "，", "。", " ", "hello ",
                                                  "world ", "3.14 ", "e.g. ", "Zoë, ", "  "};
  size_t characters = 0;
  while (characters < 200000) {
    const std::string& word = kWords[random() % kWords.size()];
    text += word;
    for (const char byte : word) characters += (static_cast<unsigned char>(byte) & 0xC0) != 0x80;
  }
  std::string streamed;
  size_t most_bytes = 0, most_tokens = 0;
  for (size_t at = 0; at < text.size();) {
    const size_t length = 1 + random() % 40;
    streamed += stream.append(std::string_view(text).substr(at, length)).text;
    at += length;
    most_bytes = std::max(most_bytes, stream.buffered_bytes());
    most_tokens = std::max(most_tokens, stream.buffered_tokens());
  }
  streamed += stream.flush().text;
  // Tokens: at most a window and a stride; bytes: those tokens' text (at most 9 bytes a token here) and a word.
  EXPECT_LE(most_tokens, static_cast<size_t>(content + stride + 2));
  EXPECT_LE(most_bytes, static_cast<size_t>((content + stride + 2) * 9));
  RecordProperty("most_buffered_tokens", std::to_string(most_tokens));
  RecordProperty("most_buffered_bytes", std::to_string(most_bytes));
  std::cout << "200k characters (" << text.size() << " bytes): at most " << most_tokens << " tokens and " << most_bytes
            << " bytes held\n";
  const std::string expected = engine.offline(window, stride).punctuate({text})[0];
  EXPECT_EQ(streamed, expected);
  // All of it in one piece: the same, in one call.
  std::string at_once = stream.append(text).text;
  at_once += stream.flush().text;
  EXPECT_EQ(at_once, expected);
}

TEST(StreamingPunctuatorTest, AFailedModelCallIsRetriedByTheNextCall) {
  Engine engine(tiny_with_random_head(kChineseLabels, 5));
  engine.hashed = true;
  StreamingPunctuator stream = engine.stream(18, 4);
  const std::string text = "今天天气很好我们去公园玩吧今天天气很好我们去公园玩吧今天天气很好我们去公园玩吧";
  std::string out = stream.append(text.substr(0, 30)).text;
  engine.fail_next = true;
  EXPECT_THROW(stream.append(text.substr(30, 30)), Error);
  out += stream.append(text.substr(60)).text;
  engine.fail_next = true;
  EXPECT_THROW(stream.flush(), Error);
  out += stream.flush().text;
  engine.rows = 0;
  EXPECT_EQ(out, engine.offline(18, 4).punctuate({text})[0]);
}

TEST(StreamingPunctuatorTest, InvalidUtf8IsRefusedAndTheStreamGoesOn) {
  Engine engine(tiny_with_random_head(kChineseLabels, 8));
  Punctuator offline = engine.offline(18, 4);
  StreamingPunctuator stream = engine.stream(18, 4);
  std::string out = stream.append("今天").text;
  try {
    stream.append("好\xFF吧");
    FAIL() << "invalid UTF-8 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_TRUE(testing::Contains(e.what(), "invalid UTF-8 at byte 9 of the text (byte 3 of this piece)"));
  }
  // A character split over pieces (3 bytes, then a 4-byte one over three pieces) waits for its last byte.
  for (const char* piece : {"天", "\xE6", "\xB0\x94", "\xF0\x9F", "\x98", "\x80", " ok"}) out += stream.append(piece).text;
  // A partial character that the next piece proves bad goes with the piece; surrogates and overlong forms are bad.
  out += stream.append("\xE5").text;
  EXPECT_THROW(stream.append("a"), InvalidArgument);
  EXPECT_THROW(stream.append("\xED\xA0\x80"), InvalidArgument);
  EXPECT_THROW(stream.append("\xC0\xAF"), InvalidArgument);
  out += stream.append("很好").text;
  // Text ending inside a character: flush refuses it, drops those bytes, and the next flush commits the rest.
  out += stream.append("\xE5\xA5").text;
  EXPECT_THROW(stream.flush(), InvalidArgument);
  out += stream.flush().text;
  EXPECT_EQ(out, offline.punctuate({"今天天气\xF0\x9F\x98\x80 ok很好"})[0]);
  std::string next = stream.append("好").text;
  next += stream.flush().text;
  EXPECT_EQ(next, offline.punctuate({"好"})[0]);
}

TEST(StreamingPunctuatorTest, ProbabilitiesAreTheModelsForTheChosenLabel) {
  Engine engine(tiny_with_random_head(kChineseLabels, 9));
  StreamingPunctuator stream = engine.stream(64, 16);
  const std::string text = "今天天气很好我们去公园玩吧";
  const Streamed streamed = stream_pieces(stream, {text});
  const auto tokens = engine.tokenizer->tokenize(text);
  InputBatch in;
  in.batch = 1;
  in.length = static_cast<int64_t>(tokens.size()) + 2;
  in.input_ids.push_back(engine.tokenizer->cls_id());
  for (const auto& token : tokens) in.input_ids.push_back(token.id);
  in.input_ids.push_back(engine.tokenizer->sep_id());
  Workspace workspace;
  const OutputBatch direct = engine.model->run(in, {false, true, false, true}, workspace);
  ASSERT_EQ(streamed.words.size(), tokens.size());
  const size_t labels = kChineseLabels.size();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t label = direct.label_ids[i + 1];
    EXPECT_EQ(streamed.words[i].label, kChineseLabels[static_cast<size_t>(label)]);
    EXPECT_FLOAT_EQ(streamed.words[i].probability, direct.probabilities[(i + 1) * labels + static_cast<size_t>(label)]);
  }
}

TEST(StreamingPunctuatorTest, BadOptionsAreRefusedAsOfflineRefusesThem) {
  Engine engine(tiny_with_random_head(kChineseLabels, 1));
  EXPECT_THROW(engine.stream(100, 16), InvalidArgument);  // past the model's 64 positions
  EXPECT_THROW(engine.stream(2, 1), InvalidArgument);     // no room for a token
  EXPECT_THROW(engine.stream(18, 3), InvalidArgument);    // under a quarter window
  EXPECT_THROW(engine.stream(18, 17), InvalidArgument);   // past the window's 16 content tokens
  EXPECT_NO_THROW(engine.stream(18, 16));
}

TEST(StreamingPunctuatorTest, IncompleteUtf8Suffix) {
  EXPECT_EQ(incomplete_utf8_suffix(""), 0u);
  EXPECT_EQ(incomplete_utf8_suffix("ab"), 0u);
  EXPECT_EQ(incomplete_utf8_suffix("a\xE4"), 1u);
  EXPECT_EQ(incomplete_utf8_suffix("a\xE4\xB8"), 2u);
  EXPECT_EQ(incomplete_utf8_suffix("a\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(incomplete_utf8_suffix("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incomplete_utf8_suffix("\xED\xA0"), 0u);  // a surrogate: never valid
  EXPECT_EQ(incomplete_utf8_suffix("\xE0\x80"), 0u);  // overlong
  EXPECT_EQ(incomplete_utf8_suffix("\xF5"), 0u);
  EXPECT_EQ(incomplete_utf8_suffix("\xB8"), 0u);
}

std::filesystem::path shipped_model(const std::string& language) {
  return std::filesystem::path(HALFSERVE_SOURCE_DIR) / "models" / ("punct-" + language + "-int8.safetensors");
}

// Real text through the shipped models: a live transcript's pieces give what the whole text gives offline.
TEST(StreamingPunctuatorTest, ShippedModelsOnRealText) {
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"zh",
       "今天早上我六点就起床了，因为要赶第一班地铁去公司开会。会议讨论了下个季度的产品计划，大家对新功能的上线时间有不同"
       "的看法。产品经理希望尽快发布，而工程师们认为测试还不够充分，应该再等两周。最后老板决定先在一个城市试点，收集用户"
       "的反馈以后再全面推广。下午我和同事一起整理了会议记录，然后给客户写了一封邮件，说明了项目的最新进展。晚上回家的路上"
       "下起了大雨，我没有带伞，只好在便利店门口等了半个小时。你明天有空吗？我们可以一起去图书馆看书，顺便讨论一下考试的"
       "安排。这个软件包提供了命令行工具和图形界面，用户可以根据自己的需要选择安装哪些组件。如果安装过程中出现错误，请先"
       "检查网络连接是否正常，然后查看日志文件中的详细信息。"},
      {"en",
       "this morning i got up at six because i had to catch the first train to the office for a meeting the meeting was "
       "about the plan for next quarter and people did not agree on when the new features should ship the product manager "
       "wanted to release as soon as possible while the engineers said testing was not finished yet in the end the boss "
       "decided to try it in one city first do you have time tomorrow we could go to the library together the package "
       "provides a command line tool and a graphical interface so users can choose which parts to install if the "
       "installation fails check the network connection first and then read the log file for details"}};
  for (const auto& [language, text] : texts) {
    if (!std::filesystem::exists(shipped_model(language))) HALFSERVE_MISSING_PREREQUISITE(shipped_model(language).string() + " missing");
    Engine engine(BertModel::load(shipped_model(language).string(), {}));
    std::mt19937 random(language == "zh" ? 21 : 22);
    for (const auto& [window, stride] : {WindowStride{64, 16}, WindowStride{128, 32}}) {
      StreamingPunctuator stream = engine.stream(window, stride);
      std::string committed_before_flush;
      for (const auto& piece : random_pieces(random, text, 60)) committed_before_flush += stream.append(piece).text;
      // Once a whole window has arrived, its first token is settled.
      if (stream.tokens_received() > stream.window()) {
        EXPECT_FALSE(committed_before_flush.empty());
      }
      const std::string expected = engine.offline(window, stride).punctuate({text})[0];
      EXPECT_EQ(committed_before_flush + stream.flush().text, expected) << language << " window " << window;
      const size_t unpunctuated = MarkSet(engine.model->metadata().labels).strip(text).size();
      EXPECT_GT(expected.size(), unpunctuated + 10) << "the model placed marks: " << expected;
    }
  }
}

}  // namespace
}  // namespace halfserve
