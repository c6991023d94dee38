// Tests for src/serve/predict_json.cc: TF Serving REST predict requests in column and row form, signature
// selection, the InvalidArgument errors for bad requests, output selection and the reply body.
#include "halfserve/serve/predict_json.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "halfserve/util/error.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::Contains;

using nlohmann::json;

class PredictJsonTest : public ::testing::Test {
 protected:
  PredictJsonTest() : metadata_(halfserve::testing::tiny_model().metadata) {
    Signature ac;
    ac.name = "ac_forward";
    ac.inputs = {{"input", InputRole::input_ids}, {"mask", InputRole::attention_mask}};
    ac.outputs = {{"punc_output", OutputRole::label_ids}};
    metadata_.signatures.push_back(ac);
  }

  PredictRequest parse(const std::string& body) const { return parse_predict_request(body, metadata_); }

  // Expects the body to be rejected with InvalidArgument containing every fragment.
  void expect_invalid(const std::string& body, const std::vector<std::string>& fragments) const {
    SCOPED_TRACE(body.size() > 200 ? body.substr(0, 200) + "..." : body);
    try {
      parse(body);
    } catch (const InvalidArgument& e) {
      for (const auto& fragment : fragments) EXPECT_TRUE(Contains(e.what(), fragment));
      return;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected halfserve::InvalidArgument, got: " << e.what();
      return;
    }
    ADD_FAILURE() << "request was accepted";
  }

  ModelMetadata metadata_;
};

TEST_F(PredictJsonTest, ABodyOfMoreValuesThanAnyBatchIsRefusedWhileParsing) {
  // 800 000 ids: more than three inputs of the engine's largest batch (3 x 2^18 + 4096 values).
  std::string body = R"({"inputs": [[)";
  for (int i = 0; i < 800000; ++i) body += i == 0 ? "1" : ",1";
  body += "]]}";
  expect_invalid(body, {"more than 790528 values"});
  // Empty arrays are nodes too.
  std::string arrays = R"({"inputs": [)";
  for (int i = 0; i < 800000; ++i) arrays += i == 0 ? "[]" : ",[]";
  arrays += "]}";
  expect_invalid(arrays, {"more than 790528 values"});
}

TEST_F(PredictJsonTest, ColumnForm) {
  const PredictRequest request =
      parse(R"({"inputs": {"input_ids": [[2, 10, 11, 3], [2, 12, 3, 0]], "attention_mask": [[1, 1, 1, 1], [1, 1, 1, 0]]}})");
  ASSERT_NE(request.signature, nullptr);
  EXPECT_EQ(request.signature->name, "serving_default");
  EXPECT_FALSE(request.row_format);
  EXPECT_EQ(request.inputs.batch, 2);
  EXPECT_EQ(request.inputs.length, 4);
  EXPECT_EQ(request.inputs.input_ids, (std::vector<int32_t>{2, 10, 11, 3, 2, 12, 3, 0}));
  EXPECT_EQ(request.inputs.attention_mask, (std::vector<int32_t>{1, 1, 1, 1, 1, 1, 1, 0}));
  EXPECT_TRUE(request.inputs.token_type_ids.empty());
}

TEST_F(PredictJsonTest, ColumnFormWithTokenTypesInAnyKeyOrder) {
  const PredictRequest request =
      parse(R"({"inputs": {"token_type_ids": [[0, 1]], "attention_mask": [[1, 1]], "input_ids": [[5, 6]]}})");
  EXPECT_EQ(request.inputs.batch, 1);
  EXPECT_EQ(request.inputs.length, 2);
  EXPECT_EQ(request.inputs.input_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(request.inputs.attention_mask, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(request.inputs.token_type_ids, (std::vector<int32_t>{0, 1}));
}

TEST_F(PredictJsonTest, BareColumnForm) {
  const PredictRequest request = parse(R"({"inputs": [[2, 7, 3], [2, 8, 3]]})");
  EXPECT_FALSE(request.row_format);
  EXPECT_EQ(request.inputs.batch, 2);
  EXPECT_EQ(request.inputs.length, 3);
  EXPECT_EQ(request.inputs.input_ids, (std::vector<int32_t>{2, 7, 3, 2, 8, 3}));
  EXPECT_TRUE(request.inputs.attention_mask.empty());
}

TEST_F(PredictJsonTest, RowForm) {
  const PredictRequest request = parse(
      R"({"instances": [{"input_ids": [2, 10, 3], "attention_mask": [1, 1, 1]},)"
      R"( {"attention_mask": [1, 1, 0], "input_ids": [2, 11, 0]}]})");
  EXPECT_TRUE(request.row_format);
  EXPECT_EQ(request.signature->name, "serving_default");
  EXPECT_EQ(request.inputs.batch, 2);
  EXPECT_EQ(request.inputs.length, 3);
  EXPECT_EQ(request.inputs.input_ids, (std::vector<int32_t>{2, 10, 3, 2, 11, 0}));
  EXPECT_EQ(request.inputs.attention_mask, (std::vector<int32_t>{1, 1, 1, 1, 1, 0}));
}

TEST_F(PredictJsonTest, BareRowForm) {
  const PredictRequest request = parse(R"({"instances": [[2, 10, 3], [2, 11, 3], [2, 12, 3]]})");
  EXPECT_TRUE(request.row_format);
  EXPECT_EQ(request.inputs.batch, 3);
  EXPECT_EQ(request.inputs.length, 3);
  EXPECT_EQ(request.inputs.input_ids, (std::vector<int32_t>{2, 10, 3, 2, 11, 3, 2, 12, 3}));
  EXPECT_TRUE(request.inputs.attention_mask.empty());
}

TEST_F(PredictJsonTest, IntegralFloatsAndInt32ExtremesAreAccepted) {
  const PredictRequest request = parse(R"({"inputs": [[3.0, 2147483647, -2147483648, 0]]})");
  EXPECT_EQ(request.inputs.input_ids,
            (std::vector<int32_t>{3, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min(), 0}));
}

TEST_F(PredictJsonTest, SignatureSelection) {
  const PredictRequest request =
      parse(R"({"signature_name": "ac_forward", "inputs": {"input": [[2, 9, 3]], "mask": [[1, 1, 0]]}})");
  ASSERT_NE(request.signature, nullptr);
  EXPECT_EQ(request.signature->name, "ac_forward");
  EXPECT_EQ(request.inputs.input_ids, (std::vector<int32_t>{2, 9, 3}));
  EXPECT_EQ(request.inputs.attention_mask, (std::vector<int32_t>{1, 1, 0}));

  const PredictRequest rows =
      parse(R"({"signature_name": "ac_forward", "instances": [{"input": [4, 5], "mask": [1, 0]}]})");
  EXPECT_EQ(rows.signature->name, "ac_forward");
  EXPECT_TRUE(rows.row_format);
  EXPECT_EQ(rows.inputs.input_ids, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(rows.inputs.attention_mask, (std::vector<int32_t>{1, 0}));

  // Bare forms go to the signature's own input_ids name.
  const PredictRequest bare = parse(R"({"signature_name": "ac_forward", "instances": [[4, 5]]})");
  EXPECT_EQ(bare.inputs.input_ids, (std::vector<int32_t>{4, 5}));

  const PredictRequest explicit_default = parse(R"({"signature_name": "serving_default", "inputs": [[1]]})");
  EXPECT_EQ(explicit_default.signature->name, "serving_default");
}

TEST_F(PredictJsonTest, SignatureInputNamesAreNotInterchangeable) {
  expect_invalid(R"({"signature_name": "ac_forward", "inputs": {"input_ids": [[1, 2]]}})",
                 {"'input_ids'", "ac_forward", "input, mask"});
  expect_invalid(R"({"inputs": {"input": [[1, 2]]}})", {"'input'", "serving_default"});
}

TEST_F(PredictJsonTest, MalformedJson) {
  expect_invalid(R"({"inputs": [[1, 2]])", {"malformed JSON"});
  expect_invalid("", {"malformed JSON"});
  expect_invalid("{\"inputs\": [[1, 2]]} trailing", {"malformed JSON"});
  expect_invalid("{\"inputs\": \"\xff\"}", {"malformed JSON"});
}

TEST_F(PredictJsonTest, NotAnObject) {
  expect_invalid("[[1, 2]]", {"JSON object"});
  expect_invalid("42", {"JSON object"});
}

TEST_F(PredictJsonTest, BothOrNeitherInstancesAndInputs) {
  expect_invalid(R"({"instances": [[1]], "inputs": [[1]]})", {"both", "instances", "inputs"});
  expect_invalid(R"({"signature_name": "serving_default"})", {"neither", "instances", "inputs"});
  expect_invalid("{}", {"neither"});
}

TEST_F(PredictJsonTest, UnknownSignature) {
  expect_invalid(R"({"signature_name": "classify", "inputs": [[1]]})", {"unknown signature_name", "'classify'"});
  expect_invalid(R"({"signature_name": 3, "inputs": [[1]]})", {"signature_name", "string"});
}

TEST_F(PredictJsonTest, UnknownInputNameListsKnownInputs) {
  expect_invalid(R"({"inputs": {"input_ids": [[1]], "pixel_values": [[1]]}})",
                 {"'pixel_values'", "input_ids", "attention_mask", "token_type_ids"});
  expect_invalid(R"({"instances": [{"input_ids": [1], "pixel_values": [1]}]})",
                 {"'pixel_values'", "input_ids", "attention_mask", "token_type_ids"});
}

TEST_F(PredictJsonTest, MissingInputIds) {
  expect_invalid(R"({"inputs": {"attention_mask": [[1, 1]]}})", {"input_ids"});
  expect_invalid(R"({"instances": [{"attention_mask": [1, 1]}]})", {"input_ids"});
  expect_invalid(R"({"signature_name": "ac_forward", "inputs": {"mask": [[1]]}})", {"'input'"});
}

TEST_F(PredictJsonTest, RaggedRows) {
  expect_invalid(R"({"inputs": {"input_ids": [[1, 2, 3], [4, 5]]}})", {"ragged", "input_ids", "row 1"});
  expect_invalid(R"({"inputs": [[1, 2], [3, 4], [5]]})", {"ragged", "row 2"});
  expect_invalid(R"({"instances": [[1, 2, 3], [4, 5]]})", {"ragged"});
  expect_invalid(R"({"instances": [{"input_ids": [1, 2]}, {"input_ids": [3]}]})", {"ragged", "input_ids"});
  expect_invalid(R"({"inputs": {"input_ids": [[1, 2], [3, 4]], "attention_mask": [[1, 1], [1]]}})",
                 {"ragged", "attention_mask"});
}

TEST_F(PredictJsonTest, RowsNotArraysOfIntegers) {
  expect_invalid(R"({"inputs": [1, 2, 3]})", {"array"});
  expect_invalid(R"({"inputs": {"input_ids": 5}})", {"input_ids", "2-D"});
  expect_invalid(R"({"inputs": [[[1, 2]]]})", {"not an integer"});
  expect_invalid(R"({"instances": 3})", {"instances", "list"});
}

TEST_F(PredictJsonTest, MaskShapeMismatchingIds) {
  expect_invalid(R"({"inputs": {"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1]]}})",
                 {"attention_mask", "input_ids", "[1, 3]"});
  expect_invalid(R"({"inputs": {"input_ids": [[1, 2], [3, 4]], "attention_mask": [[1, 1]]}})",
                 {"attention_mask", "[2, 2]"});
  expect_invalid(R"({"inputs": {"input_ids": [[1, 2]], "token_type_ids": [[0, 0, 0]]}})", {"token_type_ids"});
  // Same number of values, different shape: [2, 2] against [1, 4].
  expect_invalid(R"({"inputs": {"input_ids": [[1, 2, 3, 4]], "attention_mask": [[1, 1], [1, 1]]}})",
                 {"attention_mask", "[1, 4]"});
  expect_invalid(R"({"inputs": {"input_ids": [[1, 2, 3, 4]], "token_type_ids": [[0], [0], [0], [0]]}})",
                 {"token_type_ids", "[1, 4]"});
  expect_invalid(R"({"signature_name": "ac_forward", "inputs": {"input": [[1, 2, 3, 4]], "mask": [[1, 1], [1, 1]]}})",
                 {"'mask'", "'input'"});
  // Row form: instances that give a mask of a different length than their ids.
  expect_invalid(R"({"instances": [{"input_ids": [1, 2], "attention_mask": [1]}, {"input_ids": [3, 4], "attention_mask": [1]}]})",
                 {"attention_mask"});
}

TEST_F(PredictJsonTest, InstancesNamingDifferentInputs) {
  expect_invalid(R"({"instances": [{"input_ids": [1]}, {"input_ids": [2], "attention_mask": [1]}]})", {"instances[1]"});
  expect_invalid(R"({"instances": [{"input_ids": [1], "attention_mask": [1]}, {"input_ids": [2], "token_type_ids": [0]}]})",
                 {"instances[1]", "token_type_ids"});
}

TEST_F(PredictJsonTest, NonIntegerIds) {
  expect_invalid(R"({"inputs": [[1, 1.5, 3]]})", {"not an integer", "1.5"});
  expect_invalid(R"({"inputs": [[1, "a"]]})", {"not an integer", "\"a\""});
  expect_invalid(R"({"inputs": [[true]]})", {"not an integer"});
  expect_invalid(R"({"inputs": [[null]]})", {"not an integer"});
  expect_invalid(R"({"instances": [{"input_ids": [1, 2.25]}]})", {"not an integer", "2.25"});
  expect_invalid(R"({"inputs": {"input_ids": [[1, 2]], "attention_mask": [[1, 0.5]]}})", {"attention_mask", "0.5"});
}

TEST_F(PredictJsonTest, IdsOutsideInt32) {
  expect_invalid(R"({"inputs": [[2147483648]]})", {"2147483648", "int32"});
  expect_invalid(R"({"inputs": [[-2147483649]]})", {"-2147483649", "int32"});
  expect_invalid(R"({"inputs": [[18446744073709551615]]})", {"int32"});
  expect_invalid(R"({"inputs": [[1e20]]})", {"integer"});
  expect_invalid(R"({"inputs": [[4294967296.0]]})", {"int32"});
  expect_invalid(R"({"instances": [[1, 99999999999]]})", {"int32"});
}

TEST_F(PredictJsonTest, DeeplyNestedRequestIsAnErrorNotACrash) {
  const std::string deep = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  expect_invalid(R"({"inputs": [[1, )" + deep + "]]}", {"nested deeper than 32 levels"});
  expect_invalid(R"({"inputs": )" + deep + "}", {"nested deeper than 32 levels"});
  const std::string nested = std::string(20, '[') + std::string(20, ']');
  expect_invalid(R"({"inputs": [[1, )" + nested + "]]}", {"not an integer"});
  expect_invalid(R"({"instances": [[1, )" + nested + "]]}", {"not an integer"});
  expect_invalid(R"({"inputs": )" + nested + "}", {});
}

TEST_F(PredictJsonTest, KeysTheRequestDoesNotUseAreSkippedWhateverTheyHold) {
  const PredictRequest request =
      parse(R"({"meta": {"a": [1, 2.5, {"b": null}], "c": "d"}, "inputs": [[4, 5]], "version": 3})");
  EXPECT_EQ(request.inputs.input_ids, (std::vector<int32_t>{4, 5}));
}

TEST_F(PredictJsonTest, ANameGivenTwiceIsAnErrorNotALastOneWins) {
  // A document keeps one of two equal keys; a stream must not append both, so the reader refuses them.
  expect_invalid(R"({"inputs": [[1]], "inputs": [[2]]})", {"\"inputs\" twice"});
  expect_invalid(R"({"inputs": {"input_ids": [[1]], "input_ids": [[2]]}})", {"'input_ids' twice"});
  expect_invalid(R"({"instances": [{"input_ids": [1], "input_ids": [2]}]})", {"instances[0]", "'input_ids' twice"});
}

TEST_F(PredictJsonTest, InstancesAreAllListsOrAllObjects) {
  expect_invalid(R"({"instances": [[1, 2], {"input_ids": [3, 4]}]})", {"instances[1] is an object", "instances[0] is a list"});
  expect_invalid(R"({"instances": [{"input_ids": [3, 4]}, [1, 2]]})", {"instances[1] is a list", "instances[0] is an object"});
  expect_invalid(R"({"instances": [{"input_ids": 5}]})", {"instances[0].input_ids must be an array of integers, got number"});
  expect_invalid(R"({"instances": [7]})", {"instances[0] must be an array of integers, got number"});
}

TEST_F(PredictJsonTest, ManyInputNamesStopTheReadAndLongNamesAreCutInErrors) {
  std::string body = R"({"inputs": {)";
  for (int i = 0; i < 9; ++i) body += (i ? "," : "") + std::string("\"x") + std::to_string(i) + "\": [[1]]";
  expect_invalid(body + "}}", {"more than 8 inputs"});
  const std::string long_name(100000, 'q');
  try {
    parse(R"({"signature_name": ")" + long_name + R"(", "inputs": [[1]]})");
    ADD_FAILURE() << "an unknown signature was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_TRUE(Contains(e.what(), "unknown signature_name 'qqqq"));
    EXPECT_LT(std::string(e.what()).size(), 200u);
  }
}

TEST_F(PredictJsonTest, SelectOutputs) {
  const Signature& serving = metadata_.default_signature();
  const auto all = select_outputs(serving, {}, true);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], (std::pair<std::string, OutputRole>{"logits", OutputRole::logits}));
  EXPECT_EQ(all[1], (std::pair<std::string, OutputRole>{"label_ids", OutputRole::label_ids}));

  const auto hidden = select_outputs(serving, {"last_hidden_state"}, true);
  ASSERT_EQ(hidden.size(), 1u);
  EXPECT_EQ(hidden[0].second, OutputRole::last_hidden_state);

  const Signature& ac = *metadata_.find_signature("ac_forward");
  const auto punc = select_outputs(ac, {}, true);
  ASSERT_EQ(punc.size(), 1u);
  EXPECT_EQ(punc[0], (std::pair<std::string, OutputRole>{"punc_output", OutputRole::label_ids}));
  const auto by_name = select_outputs(ac, {"punc_output", "logits"}, true);
  ASSERT_EQ(by_name.size(), 2u);
  EXPECT_EQ(by_name[0].second, OutputRole::label_ids);
  EXPECT_EQ(by_name[1].second, OutputRole::logits);

  try {
    select_outputs(serving, {"attention_weights"}, true);
    FAIL() << "an unknown output was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_TRUE(Contains(e.what(), "attention_weights"));
  }
  const auto probabilities = select_outputs(serving, {"probabilities"}, true);
  ASSERT_EQ(probabilities.size(), 1u);
  EXPECT_EQ(probabilities[0].second, OutputRole::probabilities);
  EXPECT_TRUE(output_selection(probabilities).probabilities);
  EXPECT_THROW(select_outputs(Signature::default_for(false), {"probabilities"}, false), InvalidArgument);
  EXPECT_THROW(select_outputs(Signature::default_for(false), {"logits"}, false), InvalidArgument);
  EXPECT_THROW(select_outputs(Signature::default_for(false), {"label_ids"}, false), InvalidArgument);
  EXPECT_EQ(select_outputs(Signature::default_for(false), {"last_hidden_state"}, false).size(), 1u);
}

TEST_F(PredictJsonTest, OutputSelectionFlags) {
  const OutputSelection only_ids = output_selection({{"punc_output", OutputRole::label_ids}});
  EXPECT_FALSE(only_ids.logits);
  EXPECT_TRUE(only_ids.label_ids);
  EXPECT_FALSE(only_ids.last_hidden_state);
  const OutputSelection hidden = output_selection({{"last_hidden_state", OutputRole::last_hidden_state}});
  EXPECT_FALSE(hidden.logits);
  EXPECT_FALSE(hidden.label_ids);
  EXPECT_TRUE(hidden.last_hidden_state);
  const OutputSelection both = output_selection(metadata_.default_signature().outputs);
  EXPECT_TRUE(both.logits);
  EXPECT_TRUE(both.label_ids);
}

// Outputs for a [2, 3] request with 3 labels and hidden size 2, every value distinct and awkward to print.
struct SampleOutputs {
  static constexpr int64_t kBatch = 2, kLength = 3, kLabels = 3, kHidden = 2;
  OutputBatch batch;
  SampleOutputs() {
    batch.batch = kBatch;
    batch.length = kLength;
    const std::vector<float> specials = {0.1f, 1.0f / 3.0f, -2.5e-7f, 3.4028235e38f, -1.17549435e-38f, 1e-45f,
                                         123456.789f, -0.0f, 16777217.0f, 0.3f, 7.0f, -1.0f, 2.0f / 3.0f, 1e10f,
                                         5.9604645e-8f, -65504.0f, 0.2f, 9.87654321f};
    batch.logits.assign(specials.begin(), specials.end());
    batch.label_ids = {0, 1, 2, 2, 1, 0};
    for (int i = 0; i < kBatch * kLength * kHidden; ++i)
      batch.last_hidden_state.push_back(std::nextafter(static_cast<float>(i) * 0.7f, 100.0f));
  }
  float logit(int64_t b, int64_t t, int64_t l) const { return batch.logits[static_cast<size_t>((b * kLength + t) * kLabels + l)]; }
  float hidden(int64_t b, int64_t t, int64_t h) const {
    return batch.last_hidden_state[static_cast<size_t>((b * kLength + t) * kHidden + h)];
  }
  int32_t label(int64_t b, int64_t t) const { return batch.label_ids[static_cast<size_t>(b * kLength + t)]; }
};

// Compares a JSON [length, labels] (or [length, hidden]) array with the expected floats exactly.
void expect_float_rows(const json& rows, const std::function<float(int64_t, int64_t)>& expected, int64_t length,
                       int64_t width) {
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), static_cast<size_t>(length));
  for (int64_t t = 0; t < length; ++t) {
    ASSERT_EQ(rows[t].size(), static_cast<size_t>(width));
    for (int64_t w = 0; w < width; ++w) {
      ASSERT_TRUE(rows[t][w].is_number()) << rows[t][w];
      const float value = static_cast<float>(rows[t][w].get<double>());
      // Exact float equality (-0 is written as "-0", which JSON parsers read as the integer 0: equal, not identical).
      EXPECT_EQ(value, expected(t, w)) << "t=" << t << " w=" << w << ": " << rows[t][w].dump();
    }
  }
}

TEST_F(PredictJsonTest, ColumnResponseWithSeveralOutputs) {
  const PredictRequest request = parse(R"({"inputs": [[1, 2, 3], [4, 5, 6]]})");
  const SampleOutputs sample;
  const auto selected = select_outputs(*request.signature, {}, true);
  const json reply = json::parse(format_predict_response(request, sample.batch, selected, SampleOutputs::kLabels,
                                                         SampleOutputs::kHidden));
  ASSERT_TRUE(reply.is_object());
  ASSERT_EQ(reply.size(), 1u);
  const json& outputs = reply.at("outputs");
  ASSERT_TRUE(outputs.is_object());
  ASSERT_EQ(outputs.size(), 2u);
  const json& logits = outputs.at("logits");
  ASSERT_EQ(logits.size(), 2u);
  for (int64_t b = 0; b < 2; ++b)
    expect_float_rows(logits[b], [&](int64_t t, int64_t l) { return sample.logit(b, t, l); }, 3, 3);
  const json& labels = outputs.at("label_ids");
  ASSERT_EQ(labels.size(), 2u);
  for (int64_t b = 0; b < 2; ++b) {
    ASSERT_EQ(labels[b].size(), 3u);
    for (int64_t t = 0; t < 3; ++t) {
      ASSERT_TRUE(labels[b][t].is_number_integer());
      EXPECT_EQ(labels[b][t].get<int32_t>(), sample.label(b, t));
    }
  }
}

TEST_F(PredictJsonTest, ColumnResponseWithOneOutputIsABareValue) {
  const PredictRequest request = parse(R"({"inputs": [[1, 2, 3], [4, 5, 6]]})");
  const SampleOutputs sample;
  const json ids = json::parse(format_predict_response(request, sample.batch, {{"label_ids", OutputRole::label_ids}},
                                                       SampleOutputs::kLabels, SampleOutputs::kHidden));
  EXPECT_EQ(ids, json::parse(R"({"outputs": [[0, 1, 2], [2, 1, 0]]})"));

  const json hidden = json::parse(format_predict_response(
      request, sample.batch, {{"last_hidden_state", OutputRole::last_hidden_state}}, SampleOutputs::kLabels,
      SampleOutputs::kHidden));
  const json& value = hidden.at("outputs");
  ASSERT_TRUE(value.is_array());
  ASSERT_EQ(value.size(), 2u);
  for (int64_t b = 0; b < 2; ++b)
    expect_float_rows(value[b], [&](int64_t t, int64_t h) { return sample.hidden(b, t, h); }, 3, 2);
}

TEST_F(PredictJsonTest, ColumnResponseUsesSignatureOutputNames) {
  const PredictRequest request = parse(R"({"signature_name": "ac_forward", "inputs": {"input": [[1, 2, 3], [4, 5, 6]]}})");
  const SampleOutputs sample;
  const auto one = select_outputs(*request.signature, {}, true);
  EXPECT_EQ(json::parse(format_predict_response(request, sample.batch, one, 3, 2)),
            json::parse(R"({"outputs": [[0, 1, 2], [2, 1, 0]]})"));
  const auto two = select_outputs(*request.signature, {"punc_output", "logits"}, true);
  const json reply = json::parse(format_predict_response(request, sample.batch, two, 3, 2));
  EXPECT_EQ(reply.at("outputs").at("punc_output"), json::parse("[[0, 1, 2], [2, 1, 0]]"));
  EXPECT_EQ(reply.at("outputs").at("logits").size(), 2u);
}

TEST_F(PredictJsonTest, RowResponse) {
  const PredictRequest request = parse(R"({"instances": [[1, 2, 3], [4, 5, 6]]})");
  const SampleOutputs sample;
  const auto selected = select_outputs(*request.signature, {}, true);
  const json reply = json::parse(format_predict_response(request, sample.batch, selected, 3, 2));
  ASSERT_EQ(reply.size(), 1u);
  const json& predictions = reply.at("predictions");
  ASSERT_TRUE(predictions.is_array());
  ASSERT_EQ(predictions.size(), 2u);
  for (int64_t b = 0; b < 2; ++b) {
    const json& row = predictions[b];
    ASSERT_TRUE(row.is_object());
    EXPECT_EQ(row.size(), 2u);
    expect_float_rows(row.at("logits"), [&](int64_t t, int64_t l) { return sample.logit(b, t, l); }, 3, 3);
    ASSERT_EQ(row.at("label_ids").size(), 3u);
    for (int64_t t = 0; t < 3; ++t) EXPECT_EQ(row.at("label_ids")[t].get<int32_t>(), sample.label(b, t));
  }

  // One output: each prediction is the bare value for its instance.
  const json ids =
      json::parse(format_predict_response(request, sample.batch, {{"label_ids", OutputRole::label_ids}}, 3, 2));
  EXPECT_EQ(ids, json::parse(R"({"predictions": [[0, 1, 2], [2, 1, 0]]})"));
}

TEST_F(PredictJsonTest, FloatsRoundTripExactly) {
  const PredictRequest request = parse(R"({"inputs": [[1]]})");
  std::mt19937 random(7);
  OutputBatch outputs;
  outputs.batch = 1;
  outputs.length = 1;
  const int64_t width = 2000;
  while (static_cast<int64_t>(outputs.last_hidden_state.size()) < width) {
    const float value = std::bit_cast<float>(static_cast<uint32_t>(random()));
    if (std::isfinite(value)) outputs.last_hidden_state.push_back(value);
  }
  const json reply = json::parse(format_predict_response(
      request, outputs, {{"last_hidden_state", OutputRole::last_hidden_state}}, 0, width));
  const json& values = reply.at("outputs").at(0).at(0);
  ASSERT_EQ(values.size(), static_cast<size_t>(width));
  for (int64_t i = 0; i < width; ++i) {
    const float expected = outputs.last_hidden_state[static_cast<size_t>(i)];
    const float value = static_cast<float>(values[i].get<double>());
    EXPECT_EQ(std::bit_cast<uint32_t>(value), std::bit_cast<uint32_t>(expected)) << values[i].dump() << " vs " << expected;
  }
}

TEST_F(PredictJsonTest, NonFiniteValuesKeepTheReplyValidJson) {
  const PredictRequest request = parse(R"({"inputs": [[1]]})");
  OutputBatch outputs;
  outputs.batch = 1;
  outputs.length = 1;
  outputs.logits = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 1.0f};
  outputs.label_ids = {2};
  const std::string text = format_predict_response(request, outputs, {{"logits", OutputRole::logits}}, 3, 2);
  json reply;
  ASSERT_NO_THROW(reply = json::parse(text)) << text;
  const json& row = reply.at("outputs").at(0).at(0);
  ASSERT_EQ(row.size(), 3u);
  EXPECT_EQ(row[2], 1.0);
}

TEST_F(PredictJsonTest, ResponseKeysAreEscaped) {
  Signature odd;
  odd.name = "odd";
  odd.inputs = {{"ids", InputRole::input_ids}};
  odd.outputs = {{"quote\"and\\slash", OutputRole::label_ids}, {"logits", OutputRole::logits}};
  metadata_.signatures.push_back(odd);
  const PredictRequest request = parse(R"({"signature_name": "odd", "inputs": [[1, 2, 3], [4, 5, 6]]})");
  const SampleOutputs sample;
  const json reply =
      json::parse(format_predict_response(request, sample.batch, select_outputs(odd, {}, true), 3, 2));
  EXPECT_EQ(reply.at("outputs").at("quote\"and\\slash"), json::parse("[[0, 1, 2], [2, 1, 0]]"));
}

}  // namespace
}  // namespace halfserve
