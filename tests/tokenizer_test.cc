// BertTokenizer against Hugging Face's. Every expected token and id below was printed by transformers 4.44.2's
// slow BertTokenizer(vocab_file=..., do_lower_case=...).tokenize() + convert_tokens_to_ids() (Python 3.11, in
// the scripts/python-env.sh hf venv), not by this implementation; expected spans are BertTokenizerFast's
// offset_mapping for the same texts, turned into byte offsets. tests/python/check_tokenizer_parity.py compares
// the two on thousands of random texts.
#include "halfserve/text/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "halfserve/format/frozen_model.h"
#include "halfserve/format/vocabulary.h"
#include "halfserve/util/error.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::Contains;
using Spans = std::vector<std::pair<size_t, size_t>>;

struct ReferenceCase {
  std::string text;
  std::vector<std::string> tokens;
  std::vector<int32_t> ids;
  Spans spans;  // empty: not checked here (see SpansCoverTheirWords)
};

TokenizerSettings settings_for(const std::filesystem::path& vocab_file, bool lower) {
  TokenizerSettings settings;
  settings.vocab = read_vocabulary(vocab_file.string());
  settings.do_lower_case = lower;
  return settings;
}

std::vector<std::string> texts_of(const std::vector<Token>& tokens) {
  std::vector<std::string> texts;
  for (const Token& token : tokens) texts.push_back(token.text);
  return texts;
}

std::vector<int32_t> ids_of(const std::vector<Token>& tokens) {
  std::vector<int32_t> ids;
  for (const Token& token : tokens) ids.push_back(token.id);
  return ids;
}

Spans spans_of(const std::vector<Token>& tokens) {
  Spans spans;
  for (const Token& token : tokens) spans.emplace_back(token.begin, token.end);
  return spans;
}

void expect_reference(const BertTokenizer& tokenizer, const std::vector<ReferenceCase>& cases) {
  for (const ReferenceCase& expected : cases) {
    SCOPED_TRACE(expected.text);
    const std::vector<Token> tokens = tokenizer.tokenize(expected.text);
    EXPECT_EQ(texts_of(tokens), expected.tokens);
    EXPECT_EQ(ids_of(tokens), expected.ids);
    if (!expected.spans.empty()) {
      EXPECT_EQ(spans_of(tokens), expected.spans);
    }
  }
}

// The span contract on one text: spans increase, never overlap, stay inside the text and on character
// boundaries, and the bytes under each word (a token and its "##" continuations) tokenize to that word again.
void expect_spans_cover_their_words(const BertTokenizer& tokenizer, const std::string& text) {
  SCOPED_TRACE(text);
  const std::vector<Token> tokens = tokenizer.tokenize(text);
  size_t previous_end = 0;
  for (const Token& token : tokens) {
    EXPECT_LE(previous_end, token.begin) << token.text;
    EXPECT_LE(token.begin, token.end) << token.text;
    EXPECT_LE(token.end, text.size()) << token.text;
    for (const size_t offset : {token.begin, token.end}) {
      if (offset < text.size()) {
        EXPECT_NE(static_cast<unsigned char>(text[offset]) & 0xC0, 0x80) << token.text;
      }
    }
    EXPECT_EQ(token.continuation, token.text.starts_with("##")) << token.text;
    previous_end = token.end;
  }
  for (size_t first = 0; first < tokens.size();) {
    size_t last = first + 1;
    while (last < tokens.size() && tokens[last].continuation) ++last;
    const size_t begin = tokens[first].begin, end = tokens[last - 1].end;
    const std::vector<Token> again = tokenizer.tokenize(std::string_view(text).substr(begin, end - begin));
    std::vector<std::string> word;
    for (size_t i = first; i < last; ++i) word.push_back(tokens[i].text);
    EXPECT_EQ(texts_of(again), word) << "bytes [" << begin << ", " << end << ")";
    first = last;
  }
}

class TokenizerReferenceTest : public ::testing::Test {
 protected:
  static const BertTokenizer& uncased(const std::filesystem::path& fixtures) {
    static const BertTokenizer tokenizer(settings_for(fixtures / "vocab/bert-base-uncased-vocab.txt", true));
    return tokenizer;
  }
  static const BertTokenizer& chinese(const std::filesystem::path& fixtures) {
    static const BertTokenizer tokenizer(settings_for(fixtures / "vocab/bert-base-chinese-vocab.txt", false));
    return tokenizer;
  }
};

TEST_F(TokenizerReferenceTest, EnglishPunctuationAndWordPieces) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  expect_reference(uncased(fixtures), {
      {"Hello, world! The unaffable fox's jumps.",
       {"hello", ",", "world", "!", "the", "una", "##ffa", "##ble", "fox", "'", "s", "jumps", "."},
       {7592, 1010, 2088, 999, 1996, 14477, 20961, 3468, 4419, 1005, 1055, 14523, 1012},
       {{0, 5}, {5, 6}, {7, 12}, {12, 13}, {14, 17}, {18, 21}, {21, 24}, {24, 27}, {28, 31}, {31, 32}, {32, 33},
        {34, 39}, {39, 40}}},
      {"unaffableqqqzx",
       {"una", "##ffa", "##ble", "##q", "##q", "##q", "##z", "##x"},
       {14477, 20961, 3468, 4160, 4160, 4160, 2480, 2595},
       {{0, 3}, {3, 6}, {6, 9}, {9, 10}, {10, 11}, {11, 12}, {12, 13}, {13, 14}}},
  });
}

TEST_F(TokenizerReferenceTest, AccentsAreStrippedAndCaseIsFolded) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  expect_reference(uncased(fixtures), {
      {"Café naïve RÉSUMÉ", {"cafe", "naive", "resume"}, {7668, 15743, 13746}, {{0, 5}, {6, 12}, {13, 21}}},
      // 'İ' lower-cases to "i̇" (Python's full mapping) and loses the dot with the accents; no final sigma.
      {"İstanbul ΟΔΟΣ",
       {"istanbul", "ο", "##δ", "##ο", "##σ"},
       {9960, 1169, 29722, 29730, 29733},
       {{0, 9}, {10, 12}, {12, 14}, {14, 16}, {16, 18}}},
  });
}

TEST_F(TokenizerReferenceTest, ChineseMixedEmojiAndFullWidth) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  expect_reference(uncased(fixtures), {
      {"我爱Python编程，你呢？",
       {"我", "[UNK]", "python", "[UNK]", "[UNK]", "，", "[UNK]", "[UNK]", "？"},
       {1855, 100, 18750, 100, 100, 1989, 100, 100, 1994},
       {{0, 3}, {3, 6}, {6, 12}, {12, 15}, {15, 18}, {18, 21}, {21, 24}, {24, 27}, {27, 30}}},
      // U+FE0F after the heart is a non-spacing mark: stripped, so outside the span.
      {"I ❤️ robots 😀🤖", {"i", "[UNK]", "robots", "[UNK]"}, {1045, 100, 13507, 100},
       {{0, 1}, {2, 5}, {9, 15}, {16, 24}}},
      {"ＡＢＣ１２３！", {"[UNK]", "！"}, {100, 1986}, {{0, 18}, {18, 21}}},
  });
  expect_reference(chinese(fixtures), {
      {"中华人民共和国成立于1949年。",
       {"中", "华", "人", "民", "共", "和", "国", "成", "立", "于", "1949", "年", "。"},
       {704, 1290, 782, 3696, 1066, 1469, 1744, 2768, 4989, 754, 8594, 2399, 511},
       {{0, 3}, {3, 6}, {6, 9}, {9, 12}, {12, 15}, {15, 18}, {18, 21}, {21, 24}, {24, 27}, {27, 30}, {30, 34},
        {34, 37}, {37, 40}}},
      // Cased: "iPhone" has no match, so one [UNK] for the whole word.
      {"iPhone 15 Pro發布了！價格：＄999",
       {"[UNK]", "15", "[UNK]", "發", "布", "了", "！", "價", "格", "：", "＄", "##999"},
       {100, 8115, 100, 4634, 2357, 749, 8013, 1019, 3419, 8038, 8016, 11430},
       {{0, 6}, {7, 9}, {10, 13}, {13, 16}, {16, 19}, {19, 22}, {22, 25}, {25, 28}, {28, 31}, {31, 34}, {34, 37},
        {37, 40}}},
      {"《三体》是刘慈欣的作品……",
       {"《", "三", "体", "》", "是", "刘", "慈", "欣", "的", "作", "品", "[UNK]", "[UNK]"},
       {517, 676, 860, 518, 3221, 1155, 2705, 3615, 4638, 868, 1501, 100, 100},
       {{0, 3}, {3, 6}, {6, 9}, {9, 12}, {12, 15}, {15, 18}, {18, 21}, {21, 24}, {24, 27}, {27, 30}, {30, 33},
        {33, 36}, {36, 39}}},
      {"测试emoji😀和全角ＡＢＣ",
       {"测", "试", "[UNK]", "和", "全", "角", "[UNK]"},
       {3844, 6407, 100, 1469, 1059, 6235, 100},
       {{0, 3}, {3, 6}, {6, 15}, {15, 18}, {18, 21}, {21, 24}, {24, 33}}},
  });
}

TEST_F(TokenizerReferenceTest, ControlCharactersAreDroppedAndWhitespaceSplits) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  expect_reference(uncased(fixtures), {
      {std::string("a\0b", 3) + "\u200b" + "c\x07" + "d\uFFFD" + "e\tf\u3000g",
       {"abc", "##de", "f", "g"},
       {5925, 3207, 1042, 1043},
       {{0, 7}, {8, 13}, {14, 15}, {18, 19}}},
  });
}

TEST_F(TokenizerReferenceTest, SpecialTokensAreCutOutWherever) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  expect_reference(uncased(fixtures), {
      {"[CLS] hello [SEP] x[SEP]y [cls] [MASK]",
       {"[CLS]", "hello", "[SEP]", "x", "[SEP]", "y", "[", "cl", "##s", "]", "[MASK]"},
       {101, 7592, 102, 1060, 102, 1061, 1031, 18856, 2015, 1033, 103},
       {{0, 5}, {6, 11}, {12, 17}, {18, 19}, {19, 24}, {24, 25}, {26, 27}, {27, 29}, {29, 30}, {30, 31}, {32, 38}}},
  });
}

TEST_F(TokenizerReferenceTest, WordsLongerThan100CharactersAreUnknown) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  std::vector<std::string> tokens = {"xx"};
  std::vector<int32_t> ids = {22038};
  Spans spans = {{0, 2}};
  for (size_t begin = 2; begin < 100; begin += 2) {
    tokens.push_back("##xx");
    ids.push_back(20348);
    spans.emplace_back(begin, begin + 2);
  }
  tokens.push_back("[UNK]");
  ids.push_back(100);
  spans.emplace_back(101, 202);
  expect_reference(uncased(fixtures), {{std::string(100, 'x') + " " + std::string(101, 'y'), tokens, ids, spans}});
}

TEST_F(TokenizerReferenceTest, HangulSyllablesSplitIntoJamoPieces) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  // Each syllable's first jamo piece covers the syllable; the pieces after it start (empty) where it ends.
  expect_reference(uncased(fixtures), {
      {"한국어",
       {"ᄒ", "##ᅡ", "##ᆫ", "##ᄀ", "##ᅮ", "##ᆨ", "##ᄋ", "##ᅥ"},
       {1469, 30006, 30021, 29991, 30014, 30020, 29999, 30008},
       {{0, 3}, {3, 3}, {3, 3}, {3, 6}, {6, 6}, {6, 6}, {6, 9}, {9, 9}}},
  });
}

TEST_F(TokenizerReferenceTest, SpansCoverTheirWords) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const std::vector<std::string> texts = {
      "Hello, world! The unaffable fox's jumps.",
      "Cafe\u0301 naïve RÉSUMÉ İstanbul ΟΔΟΣ",
      "我爱Python编程，你呢？ＡＢＣ１２３！ I ❤️ robots 😀🤖",
      "a\u200bb\u00adc [CLS]x[SEP] \u2028 ﬁne ½ ①",
      "unaffableqqqzx " + std::string(120, 'z'),
  };
  for (const std::string& text : texts) {
    expect_spans_cover_their_words(uncased(fixtures), text);
    expect_spans_cover_their_words(chinese(fixtures), text);
  }
}

TEST_F(TokenizerReferenceTest, SpecialIdsComeFromTheVocabulary) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const BertTokenizer& tokenizer = uncased(fixtures);
  EXPECT_EQ(tokenizer.vocab_size(), 30522u);
  EXPECT_EQ(tokenizer.pad_id(), 0);
  EXPECT_EQ(tokenizer.unk_id(), 100);
  EXPECT_EQ(tokenizer.cls_id(), 101);
  EXPECT_EQ(tokenizer.sep_id(), 102);
  EXPECT_EQ(tokenizer.id_of("hello"), 7592);
  EXPECT_EQ(tokenizer.id_of("no-such-token"), 100);
}

// A vocabulary small enough to spell out, for the settings the real models do not exercise.
TokenizerSettings small_settings() {
  TokenizerSettings settings;
  settings.vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "caf", "##é", "##e",
                    "é", "e", "中", "文", "中文", "a", "##a", "a", "i", "##\u0307"};
  return settings;
}

TEST(TokenizerSettingsTest, ChineseCharactersCanStayInsideWords) {
  TokenizerSettings settings = small_settings();
  expect_reference(BertTokenizer(settings), {{"中文 中文", {"中", "文", "中", "文"}, {13, 14, 13, 14}, {}}});
  settings.tokenize_chinese_chars = false;
  expect_reference(BertTokenizer(settings), {{"中文 中文", {"中文", "中文"}, {15, 15}, {{0, 6}, {7, 13}}}});
}

TEST(TokenizerSettingsTest, AccentsCanBeKeptOrStrippedWithoutLowerCase) {
  TokenizerSettings settings = small_settings();
  settings.strip_accents = false;
  // Without stripping, 'İ' stays "i̇": two code points, so two pieces over one original character.
  expect_reference(BertTokenizer(settings),
                   {{"Café İ", {"caf", "##é", "i", "##\u0307"}, {8, 9, 19, 20}, {{0, 3}, {3, 5}, {6, 8}, {8, 8}}}});
  settings.do_lower_case = false;
  settings.strip_accents = true;
  expect_reference(BertTokenizer(settings), {
      {"café", {"caf", "##e"}, {8, 10}, {{0, 3}, {3, 5}}},
      // Stripping the accent of "[CLŚ]" makes a special token, which BertTokenizer then never splits.
      {"[CLS\u0301]", {"[CLS]"}, {2}, {{0, 7}}},
  });
}

TEST(TokenizerSettingsTest, DuplicateEntriesKeepTheirLastId) {
  expect_reference(BertTokenizer(small_settings()), {{"a aa", {"a", "a", "##a"}, {18, 18, 17}, {}}});
}

TEST(TokenizerSettingsTest, MaxInputCharsPerWordIsHonoured) {
  TokenizerSettings settings = small_settings();
  settings.max_input_chars_per_word = 5;
  expect_reference(BertTokenizer(settings), {
      {"aaaaa aaaaaa", {"a", "##a", "##a", "##a", "##a", "[UNK]"}, {18, 17, 17, 17, 17, 1}, {}},
      {"unaffable unaffablex", {"[UNK]", "[UNK]"}, {1, 1}, {}},
  });
  settings.max_input_chars_per_word = 100;
  expect_reference(BertTokenizer(settings),
                   {{"unaffable unaffablex", {"un", "##aff", "##able", "[UNK]"}, {5, 6, 7, 1}, {}}});
}

TEST(TokenizerSettingsTest, VocabularyWithoutSpecialTokensIsRefused) {
  TokenizerSettings settings = small_settings();
  settings.unk_token = "<unk>";
  try {
    BertTokenizer tokenizer(settings);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "<unk>"));
  }
  settings = small_settings();
  settings.type = "sentencepiece";
  EXPECT_THROW(BertTokenizer{settings}, Error);
}

TEST(TokenizerInputTest, InvalidUtf8IsAnInvalidArgument) {
  const BertTokenizer tokenizer(small_settings());
  for (const std::string& bad : {std::string("ok \x80"), std::string("\xC3"), std::string("ab\xC0\x80"),
                                 std::string("\xED\xA0\x80"), std::string("\xF4\x90\x80\x80"), std::string("\xFF")}) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    EXPECT_THROW(tokenizer.tokenize(bad), InvalidArgument);
  }
  try {
    tokenizer.tokenize("ok \x80");
  } catch (const InvalidArgument& e) {
    EXPECT_TRUE(Contains(e.what(), "byte 3"));
  }
  EXPECT_TRUE(tokenizer.tokenize("").empty());
  EXPECT_TRUE(tokenizer.tokenize(" \t\u3000\x01 ").empty());
}

TEST(TokenizerCliTest, PrintsOneJsonObjectPerLine) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const std::string vocab = (fixtures / "vocab/bert-base-uncased-vocab.txt").string();
  const auto result = halfserve::testing::run_cli("tokenize --lower --vocab '" + vocab + "'", "Hello, World!\n\nCafé");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "{\"tokens\":[\"hello\",\",\",\"world\",\"!\"],\"ids\":[7592,1010,2088,999],"
            "\"spans\":[[0,5],[5,6],[7,12],[12,13]]}\n"
            "{\"tokens\":[],\"ids\":[],\"spans\":[]}\n"
            "{\"tokens\":[\"cafe\"],\"ids\":[7668],\"spans\":[[0,5]]}\n");
}

TEST(TokenizerCliTest, InvalidUtf8NamesTheLine) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const std::string vocab = (fixtures / "vocab/bert-base-uncased-vocab.txt").string();
  const auto result = halfserve::testing::run_cli("tokenize --vocab '" + vocab + "'", "fine\nbad \xFF\n");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(Contains(result.err, "line 2"));
  EXPECT_TRUE(Contains(result.out, "\"fine\""));
}

TEST(TokenizerCliTest, ReadsTheModelsTokenizerAndRefusesBadUsage) {
  halfserve::testing::TempDir dir;
  const FrozenModel model = halfserve::testing::tiny_model();
  save_frozen_model(model, (dir / "tiny.safetensors").string());
  std::ofstream(dir / "texts.txt") << "中a\n";
  const auto result =
      halfserve::testing::run_cli("tokenize --model '" + (dir / "tiny.safetensors").string() + "' --input '" +
                                  (dir / "texts.txt").string() + "'");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto& vocab = model.metadata.tokenizer.vocab;
  const auto id = [&](const std::string& token) {
    return std::to_string(std::find(vocab.begin(), vocab.end(), token) - vocab.begin());
  };
  EXPECT_EQ(result.out, "{\"tokens\":[\"中\",\"a\"],\"ids\":[" + id("中") + "," + id("a") +
                            "],\"spans\":[[0,3],[3,4]]}\n");
  EXPECT_EQ(halfserve::testing::run_cli("tokenize").exit_code, 2);
  EXPECT_EQ(halfserve::testing::run_cli("tokenize --model x --vocab y").exit_code, 2);
  EXPECT_EQ(halfserve::testing::run_cli("tokenize --model x --lower").exit_code, 2);
}

}  // namespace
}  // namespace halfserve
