// Tests for src/format/frozen_model.cc and src/format/model_metadata.cc: save/load round trips, file sizes, the
// errors a malformed frozen file gives (each naming the file and the problem), and label punctuation marks.
#include "halfserve/import/label_names.h"
#include "halfserve/format/frozen_model.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "halfserve/format/bert_tensors.h"
#include "halfserve/format/model_metadata.h"
#include "halfserve/format/safetensors.h"
#include "halfserve/util/error.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::Contains;
using testing::read_all;

namespace fs = std::filesystem;
using nlohmann::json;

// The tensors of `model` as a list that tests can edit before writing.
std::vector<NamedTensor> tensor_list(const FrozenModel& model) {
  std::vector<NamedTensor> tensors;
  for (const auto& name : model.tensors.names()) tensors.push_back({name, model.tensors.at(name)});
  return tensors;
}

NamedTensor* find_tensor(std::vector<NamedTensor>& tensors, const std::string& name) {
  for (auto& tensor : tensors)
    if (tensor.name == name) return &tensor;
  return nullptr;
}

// Expects load_frozen_model(path) to throw halfserve::Error naming the path and every fragment.
void expect_load_error(const fs::path& path, const std::vector<std::string>& fragments) {
  try {
    load_frozen_model(path.string());
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_TRUE(Contains(message, path.string())) << "message does not name the file";
    for (const auto& fragment : fragments) EXPECT_TRUE(Contains(message, fragment));
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected halfserve::Error, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected halfserve::Error for " << path << ", but the file was accepted";
}

class FrozenModelTest : public ::testing::Test {
 protected:
  FrozenModelTest() : model_(halfserve::testing::tiny_model()) {}

  fs::path file(const std::string& name) const { return dir_ / name; }

  // Writes the model's tensors (as edited) with the given metadata, bypassing every check of save_frozen_model.
  fs::path write_raw(const std::string& name, const std::vector<NamedTensor>& tensors,
                     const std::map<std::string, std::string>& metadata) const {
    const fs::path path = file(name);
    SafetensorsLayout(tensors, metadata).write(path.string());
    return path;
  }

  halfserve::testing::TempDir dir_;
  FrozenModel model_;
};

TEST_F(FrozenModelTest, TinyModelIsWhatTheTestsAssume) {
  const BertConfig& c = model_.metadata.config;
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.vocab_size, 300);
  EXPECT_EQ(c.max_positions, 64);
  ASSERT_EQ(model_.metadata.labels.size(), 6u);
  // 5 embedding tensors, 16 per layer, 2 for the head.
  EXPECT_EQ(model_.tensors.size(), 5u + 16u * 2u + 2u);
  EXPECT_NO_THROW(model_.validate());
}

TEST_F(FrozenModelTest, SaveLoadRoundTripKeepsEverything) {
  ModelMetadata& m = model_.metadata;
  m.config.activation = Activation::gelu_tanh;
  m.config.layer_norm_eps = 1e-5f;
  m.labels[0] = {"O", ""};
  m.labels[1] = {"，", "，"};
  m.labels[5] = {"COMMA", ","};
  m.tokenizer.do_lower_case = false;
  m.tokenizer.strip_accents = true;
  m.tokenizer.tokenize_chinese_chars = false;
  m.tokenizer.max_input_chars_per_word = 42;
  m.tokenizer.unk_token = "<unk>";
  m.tokenizer.vocab[7] = "tab\there \"quoted\" \\ and é";
  Signature extra;
  extra.name = "ac_forward";
  extra.inputs = {{"input", InputRole::input_ids}, {"mask", InputRole::attention_mask}};
  extra.outputs = {{"punc_output", OutputRole::label_ids}};
  m.signatures.push_back(extra);
  m.provenance.source_format = "hf";
  m.provenance.source = "/models/bert-punc";
  m.provenance.precision = Precision::fp32;
  m.provenance.tool = "halfserve test";
  m.provenance.created = "2026-11-26T10:00:00Z";
  m.provenance.notes = {"first note", "second note, with “quotes”"};
  TensorCastReport report;
  report.name = "bert.embeddings.word_embeddings.weight";
  report.source_dtype = DType::f32;
  report.target_dtype = DType::f16;
  report.numel = 9600;
  report.max_abs = 0.123456789f;
  report.max_abs_error = 1.0 / 3.0;
  report.clamped = 1;
  report.underflowed = 2;
  report.nan_count = 3;
  report.inf_count = 4;
  report.kept_fp32 = true;
  m.provenance.conversion_report = {report};

  const fs::path path = file("model.safetensors");
  const uint64_t written = save_frozen_model(model_, path.string());
  EXPECT_EQ(written, fs::file_size(path));
  EXPECT_EQ(frozen_model_file_size(model_), written);

  const FrozenModel loaded = load_frozen_model(path.string());
  EXPECT_EQ(loaded.path, path.string());
  const ModelMetadata& l = loaded.metadata;
  EXPECT_EQ(l.config.num_layers, 2);
  EXPECT_EQ(l.config.hidden_size, 32);
  EXPECT_EQ(l.config.num_heads, 4);
  EXPECT_EQ(l.config.intermediate_size, 64);
  EXPECT_EQ(l.config.vocab_size, 300);
  EXPECT_EQ(l.config.max_positions, 64);
  EXPECT_EQ(l.config.type_vocab_size, m.config.type_vocab_size);
  EXPECT_EQ(l.config.activation, Activation::gelu_tanh);
  EXPECT_EQ(l.config.layer_norm_eps, 1e-5f);

  ASSERT_EQ(l.labels.size(), m.labels.size());
  for (size_t i = 0; i < m.labels.size(); ++i) {
    EXPECT_EQ(l.labels[i].name, m.labels[i].name) << i;
    EXPECT_EQ(l.labels[i].mark, m.labels[i].mark) << i;
  }
  EXPECT_EQ(l.labels[1].mark, "，");
  EXPECT_EQ(l.labels[5].mark, ",");

  EXPECT_EQ(l.tokenizer.type, m.tokenizer.type);
  EXPECT_FALSE(l.tokenizer.do_lower_case);
  ASSERT_TRUE(l.tokenizer.strip_accents.has_value());
  EXPECT_TRUE(*l.tokenizer.strip_accents);
  EXPECT_FALSE(l.tokenizer.tokenize_chinese_chars);
  EXPECT_EQ(l.tokenizer.max_input_chars_per_word, 42);
  EXPECT_EQ(l.tokenizer.unk_token, "<unk>");
  EXPECT_EQ(l.tokenizer.cls_token, "[CLS]");
  EXPECT_EQ(l.tokenizer.sep_token, "[SEP]");
  EXPECT_EQ(l.tokenizer.pad_token, "[PAD]");
  EXPECT_EQ(l.tokenizer.mask_token, "[MASK]");
  EXPECT_EQ(l.tokenizer.vocab, m.tokenizer.vocab);

  ASSERT_EQ(l.signatures.size(), 2u);
  EXPECT_EQ(l.default_signature().name, "serving_default");
  EXPECT_EQ(l.default_signature().method_name, "tensorflow/serving/predict");
  const Signature* ac = l.find_signature("ac_forward");
  ASSERT_NE(ac, nullptr);
  EXPECT_EQ(ac->input_role("input"), InputRole::input_ids);
  EXPECT_EQ(ac->input_role("mask"), InputRole::attention_mask);
  EXPECT_FALSE(ac->input_role("input_ids").has_value());
  EXPECT_EQ(ac->output_name(OutputRole::label_ids), "punc_output");
  EXPECT_FALSE(ac->output_name(OutputRole::logits).has_value());
  std::set<std::string> default_inputs;
  for (const auto& [name, role] : l.default_signature().inputs) default_inputs.insert(name);
  EXPECT_EQ(default_inputs, (std::set<std::string>{"input_ids", "attention_mask", "token_type_ids"}));

  const Provenance& p = l.provenance;
  EXPECT_EQ(p.source_format, "hf");
  EXPECT_EQ(p.source, "/models/bert-punc");
  EXPECT_EQ(p.precision, Precision::fp32);
  EXPECT_EQ(p.tool, "halfserve test");
  EXPECT_EQ(p.created, "2026-11-26T10:00:00Z");
  EXPECT_EQ(p.notes, m.provenance.notes);
  ASSERT_EQ(p.conversion_report.size(), 1u);
  const TensorCastReport& r = p.conversion_report[0];
  EXPECT_EQ(r.name, report.name);
  EXPECT_EQ(r.source_dtype, DType::f32);
  EXPECT_EQ(r.target_dtype, DType::f16);
  EXPECT_EQ(r.numel, 9600);
  EXPECT_EQ(r.max_abs, report.max_abs);
  EXPECT_EQ(r.max_abs_error, report.max_abs_error);
  EXPECT_EQ(r.clamped, 1);
  EXPECT_EQ(r.underflowed, 2);
  EXPECT_EQ(r.nan_count, 3);
  EXPECT_EQ(r.inf_count, 4);
  EXPECT_TRUE(r.kept_fp32);

  ASSERT_EQ(loaded.tensors.size(), model_.tensors.size());
  for (const auto& name : model_.tensors.names()) {
    const TensorView& a = model_.tensors.at(name);
    const TensorView* b = loaded.tensors.find(name);
    ASSERT_NE(b, nullptr) << name;
    EXPECT_EQ(b->dtype, a.dtype) << name;
    EXPECT_EQ(b->shape, a.shape) << name;
    EXPECT_TRUE(std::equal(a.data.begin(), a.data.end(), b->data.begin(), b->data.end())) << name << " bytes differ";
  }
}

TEST_F(FrozenModelTest, UnsetStripAccentsStaysUnset) {
  ASSERT_FALSE(model_.metadata.tokenizer.strip_accents.has_value());
  const fs::path path = file("model.safetensors");
  save_frozen_model(model_, path.string());
  EXPECT_FALSE(load_frozen_model(path.string()).metadata.tokenizer.strip_accents.has_value());
}

TEST_F(FrozenModelTest, EncoderWithoutHeadRoundTrips) {
  model_.metadata.labels.clear();
  model_.metadata.signatures = {Signature::default_for(false)};
  FrozenModel encoder;
  encoder.metadata = model_.metadata;
  for (const auto& name : model_.tensors.names())
    if (name.rfind("classifier.", 0) != 0) encoder.tensors.add_view(name, model_.tensors.at(name));
  const fs::path path = file("encoder.safetensors");
  const uint64_t written = save_frozen_model(encoder, path.string());
  EXPECT_EQ(written, fs::file_size(path));
  const FrozenModel loaded = load_frozen_model(path.string());
  EXPECT_FALSE(loaded.metadata.has_head());
  EXPECT_FALSE(loaded.tensors.contains("classifier.weight"));
  EXPECT_EQ(loaded.metadata.default_signature().output_name(OutputRole::last_hidden_state), "last_hidden_state");
}

TEST_F(FrozenModelTest, FileSizeMatchesWrittenSizeForHalfPrecisionTensors) {
  // Mixed dtypes reorder tensors and change padding; the predicted size must still be exact.
  std::vector<std::vector<std::byte>> buffers;
  FrozenModel mixed;
  mixed.metadata = model_.metadata;
  for (const auto& name : model_.tensors.names()) {
    const TensorView& view = model_.tensors.at(name);
    if (view.shape.size() == 2) {
      std::vector<std::byte> half(view.data.size() / 2);  // zeros are valid F16 and BF16
      mixed.tensors.add_owned(name, name.find("query") != std::string::npos ? DType::bf16 : DType::f16, view.shape,
                              std::move(half));
    } else {
      mixed.tensors.add_view(name, view);
    }
  }
  const fs::path path = file("mixed.safetensors");
  const uint64_t written = save_frozen_model(mixed, path.string());
  EXPECT_EQ(written, fs::file_size(path));
  EXPECT_EQ(frozen_model_file_size(mixed), written);
  const FrozenModel loaded = load_frozen_model(path.string());
  EXPECT_EQ(loaded.tensors.at("bert.encoder.layer.0.attention.self.query.weight").dtype, DType::bf16);
  EXPECT_EQ(loaded.tensors.at("classifier.weight").dtype, DType::f16);
  EXPECT_EQ(loaded.tensors.at("classifier.bias").dtype, DType::f32);
}

TEST_F(FrozenModelTest, HeaderIsPlainJsonWithStringMetadata) {
  // What Python's json.loads (and the safetensors library) need: a JSON object header with string metadata
  // values, each halfserve value itself a JSON document.
  const fs::path path = file("model.safetensors");
  save_frozen_model(model_, path.string());
  const std::string raw = read_all(path);
  ASSERT_GE(raw.size(), 8u);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
  ASSERT_LE(8 + header_size, raw.size());
  const std::string header_text = raw.substr(8, header_size);
  EXPECT_EQ(header_text.front(), '{');
  // No NaN/Infinity tokens (Python accepts them, other JSON parsers do not) and no control characters.
  for (const char* token : {"NaN", "Infinity"}) EXPECT_EQ(header_text.find(token), std::string::npos) << token;
  for (char c : header_text) EXPECT_GE(static_cast<unsigned char>(c), 0x20u) << "raw control character in header";
  json header;
  ASSERT_NO_THROW(header = json::parse(header_text));  // strict parser, rejects invalid UTF-8 too
  ASSERT_TRUE(header.is_object());
  ASSERT_TRUE(header.contains("__metadata__"));
  const json& metadata = header["__metadata__"];
  ASSERT_TRUE(metadata.is_object());
  EXPECT_EQ(metadata["format"], "pt");
  EXPECT_EQ(metadata["halfserve.format_version"], std::to_string(kModelFormatVersion));
  for (const auto& [key, value] : metadata.items()) {
    ASSERT_TRUE(value.is_string()) << key;
    if (key.rfind("halfserve.", 0) == 0 && key != "halfserve.format_version") {
      EXPECT_TRUE(json::accept(value.get<std::string>())) << key;
    }
  }
  const json arch = json::parse(metadata["halfserve.architecture"].get<std::string>());
  EXPECT_EQ(arch["hidden_size"], 32);
  EXPECT_EQ(arch["num_layers"], 2);
  const json tokenizer = json::parse(metadata["halfserve.tokenizer"].get<std::string>());
  EXPECT_EQ(tokenizer["vocab"].size(), 300u);
  // One header entry per tensor, under the Hugging Face names.
  EXPECT_EQ(header.size(), model_.tensors.size() + 1);
  EXPECT_EQ(header["bert.embeddings.word_embeddings.weight"]["shape"], json({300, 32}));
  EXPECT_EQ(header["classifier.weight"]["dtype"], "F32");
}

TEST_F(FrozenModelTest, SaveRefusesAnInvalidModelAndWritesNothing) {
  FrozenModel broken;
  broken.metadata = model_.metadata;
  for (const auto& name : model_.tensors.names())
    if (name != "classifier.bias") broken.tensors.add_view(name, model_.tensors.at(name));
  const fs::path path = file("broken.safetensors");
  try {
    save_frozen_model(broken, path.string());
    FAIL() << "an incomplete model was saved";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "classifier.bias"));
  }
  EXPECT_TRUE(fs::is_empty(dir_.path())) << "a failed save left files behind";
}

TEST_F(FrozenModelTest, PlainSafetensorsWithoutHalfserveMetadata) {
  const auto path = write_raw("plain.safetensors", tensor_list(model_), {{"format", "pt"}});
  expect_load_error(path, {"halfserve.format_version", "not a halfserve frozen file"});
  const auto bare = write_raw("bare.safetensors", tensor_list(model_), {});
  expect_load_error(bare, {"halfserve.format_version"});
}

TEST_F(FrozenModelTest, PyTorchFixtureIsNotAFrozenFile) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  expect_load_error(fixtures / "torch_bert_tokcls" / "model.safetensors", {"not a halfserve frozen file"});
}

TEST_F(FrozenModelTest, MissingTensor) {
  auto tensors = tensor_list(model_);
  std::erase_if(tensors, [](const NamedTensor& t) { return t.name == "bert.encoder.layer.1.output.dense.weight"; });
  const auto path = write_raw("missing.safetensors", tensors, metadata_to_strings(model_.metadata));
  expect_load_error(path, {"missing tensor", "bert.encoder.layer.1.output.dense.weight", "[32, 64]"});
}

TEST_F(FrozenModelTest, TensorWithWrongShape) {
  auto tensors = tensor_list(model_);
  NamedTensor* bias = find_tensor(tensors, "classifier.bias");
  ASSERT_NE(bias, nullptr);
  bias->view.shape = {5};
  bias->view.data = bias->view.data.first(5 * 4);
  const auto path = write_raw("shape.safetensors", tensors, metadata_to_strings(model_.metadata));
  expect_load_error(path, {"classifier.bias", "[5]", "[6]"});
  // Same element count, different shape.
  tensors = tensor_list(model_);
  NamedTensor* query = find_tensor(tensors, "bert.encoder.layer.0.attention.self.query.weight");
  ASSERT_NE(query, nullptr);
  query->view.shape = {16, 64};
  const auto path2 = write_raw("reshaped.safetensors", tensors, metadata_to_strings(model_.metadata));
  expect_load_error(path2, {"bert.encoder.layer.0.attention.self.query.weight", "[16, 64]", "[32, 32]"});
}

TEST_F(FrozenModelTest, LabelCountNotMatchingClassifier) {
  ModelMetadata metadata = model_.metadata;
  metadata.labels.push_back({"EXTRA", ""});
  const auto path = write_raw("labels.safetensors", tensor_list(model_), metadata_to_strings(metadata));
  expect_load_error(path, {"classifier.weight", "[7, 32]"});
}

TEST_F(FrozenModelTest, TensorWithIntegerDtype) {
  auto tensors = tensor_list(model_);
  NamedTensor* bias = find_tensor(tensors, "bert.embeddings.LayerNorm.bias");
  ASSERT_NE(bias, nullptr);
  bias->view.dtype = DType::i32;  // same byte count as F32
  const auto path = write_raw("dtype.safetensors", tensors, metadata_to_strings(model_.metadata));
  expect_load_error(path, {"bert.embeddings.LayerNorm.bias", "I32"});
}

TEST_F(FrozenModelTest, UnexpectedExtraTensor) {
  auto tensors = tensor_list(model_);
  tensors.push_back({"bert.pooler.dense.bias", model_.tensors.at("bert.embeddings.LayerNorm.bias")});
  const auto path = write_raw("extra.safetensors", tensors, metadata_to_strings(model_.metadata));
  expect_load_error(path, {"unexpected tensor", "bert.pooler.dense.bias"});
}

TEST_F(FrozenModelTest, MalformedMetadataJson) {
  auto strings = metadata_to_strings(model_.metadata);
  strings["halfserve.architecture"] = "{\"num_layers\": 2,";
  expect_load_error(write_raw("arch.safetensors", tensor_list(model_), strings),
                    {"halfserve.architecture", "not valid JSON"});

  strings = metadata_to_strings(model_.metadata);
  strings["halfserve.signatures"] = "[{]";
  expect_load_error(write_raw("signatures.safetensors", tensor_list(model_), strings),
                    {"halfserve.signatures", "not valid JSON"});

  strings = metadata_to_strings(model_.metadata);
  strings["halfserve.architecture"] = "[1, 2]";
  expect_load_error(write_raw("arch-array.safetensors", tensor_list(model_), strings),
                    {"halfserve.architecture", "not a JSON object"});

  strings = metadata_to_strings(model_.metadata);
  strings.erase("halfserve.tokenizer");
  expect_load_error(write_raw("no-tokenizer.safetensors", tensor_list(model_), strings),
                    {"halfserve.tokenizer", "missing"});
}

TEST_F(FrozenModelTest, MetadataFieldsWithWrongTypesOrValues) {
  auto edit_arch = [&](const std::string& name, const std::function<void(json&)>& change) {
    auto strings = metadata_to_strings(model_.metadata);
    json arch = json::parse(strings["halfserve.architecture"]);
    change(arch);
    strings["halfserve.architecture"] = arch.dump();
    return write_raw(name, tensor_list(model_), strings);
  };
  expect_load_error(edit_arch("type.safetensors", [](json& a) { a["hidden_size"] = "32"; }),
                    {"halfserve.architecture", "hidden_size", "wrong type"});
  expect_load_error(edit_arch("missing.safetensors", [](json& a) { a.erase("num_heads"); }),
                    {"halfserve.architecture", "num_heads", "missing"});
  expect_load_error(edit_arch("divisible.safetensors", [](json& a) { a["num_heads"] = 5; }),
                    {"hidden_size", "num_heads"});
  expect_load_error(edit_arch("zero.safetensors", [](json& a) { a["num_layers"] = 0; }), {"num_layers", "positive"});
  expect_load_error(edit_arch("activation.safetensors", [](json& a) { a["activation"] = "relu"; }), {"relu"});
  expect_load_error(edit_arch("model-type.safetensors", [](json& a) { a["model_type"] = "gpt2"; }), {"gpt2"});

  auto strings = metadata_to_strings(model_.metadata);
  json signatures = json::parse(strings["halfserve.signatures"]);
  signatures[0]["inputs"]["input_ids"] = "pixels";
  strings["halfserve.signatures"] = signatures.dump();
  expect_load_error(write_raw("role.safetensors", tensor_list(model_), strings), {"input_ids", "pixels"});

  strings = metadata_to_strings(model_.metadata);
  strings["halfserve.signatures"] = "[]";
  expect_load_error(write_raw("no-signature.safetensors", tensor_list(model_), strings), {"halfserve.signatures"});
}

TEST_F(FrozenModelTest, DeeplyNestedMetadataIsAnErrorNotACrash) {
  const std::string deep = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  const std::string nested = std::string(20, '[') + std::string(20, ']');
  auto strings = metadata_to_strings(model_.metadata);
  json arch = json::parse(strings["halfserve.architecture"]);
  const std::string arch_text = arch.dump();
  // Replace "num_layers": 2 by a deeply nested array, which the error message must not try to quote in full.
  const std::string key = "\"num_layers\":2";
  const size_t at = arch_text.find(key);
  ASSERT_NE(at, std::string::npos) << arch_text;
  strings["halfserve.architecture"] = arch_text.substr(0, at) + "\"num_layers\":" + nested + arch_text.substr(at + key.size());
  expect_load_error(write_raw("nested-arch.safetensors", tensor_list(model_), strings), {"num_layers"});

  strings = metadata_to_strings(model_.metadata);
  strings["halfserve.signatures"] =
      R"([{"name":"serving_default","method_name":"m","inputs":{"input_ids":)" + nested + R"(},"outputs":{}}])";
  expect_load_error(write_raw("nested-signature.safetensors", tensor_list(model_), strings), {"input_ids"});

  strings = metadata_to_strings(model_.metadata);
  strings["halfserve.labels"] = deep;
  expect_load_error(write_raw("deep-labels.safetensors", tensor_list(model_), strings),
                    {"halfserve.labels", "nested deeper than 32 levels"});
}

TEST_F(FrozenModelTest, UnsupportedFormatVersion) {
  auto strings = metadata_to_strings(model_.metadata);
  strings["halfserve.format_version"] = "2";
  expect_load_error(write_raw("v2.safetensors", tensor_list(model_), strings),
                    {"unsupported", "format version '2'", std::to_string(kModelFormatVersion)});
  strings["halfserve.format_version"] = "one";
  expect_load_error(write_raw("vone.safetensors", tensor_list(model_), strings), {"format version 'one'"});
}

TEST_F(FrozenModelTest, TruncatedFile) {
  const fs::path path = file("model.safetensors");
  const uint64_t size = save_frozen_model(model_, path.string());
  fs::resize_file(path, size - 100);
  expect_load_error(path, {"truncated"});
  fs::resize_file(path, 100);
  expect_load_error(path, {"truncated"});
}

TEST_F(FrozenModelTest, MissingFile) { expect_load_error(file("nowhere.safetensors"), {"cannot open"}); }

TEST_F(FrozenModelTest, MetadataStringsRoundTripWithoutAFile) {
  const ModelMetadata back = metadata_from_strings(metadata_to_strings(model_.metadata));
  EXPECT_EQ(back.config.hidden_size, model_.metadata.config.hidden_size);
  EXPECT_EQ(back.tokenizer.vocab, model_.metadata.tokenizer.vocab);
  ASSERT_EQ(back.labels.size(), model_.metadata.labels.size());
  for (size_t i = 0; i < back.labels.size(); ++i) EXPECT_EQ(back.labels[i].mark, model_.metadata.labels[i].mark);
}

TEST(FrozenModelLabelTest, PunctuationMarkForLabel) {
  EXPECT_EQ(punctuation_mark_for_label("，"), "，");
  EXPECT_EQ(punctuation_mark_for_label("。"), "。");
  EXPECT_EQ(punctuation_mark_for_label("？"), "？");
  EXPECT_EQ(punctuation_mark_for_label("、"), "、");
  EXPECT_EQ(punctuation_mark_for_label(","), ",");
  EXPECT_EQ(punctuation_mark_for_label("?!"), "?!");
  EXPECT_EQ(punctuation_mark_for_label("O"), "");
  EXPECT_EQ(punctuation_mark_for_label(""), "");
  EXPECT_EQ(punctuation_mark_for_label("COMMA"), ",");
  EXPECT_EQ(punctuation_mark_for_label("PERIOD"), ".");
  EXPECT_EQ(punctuation_mark_for_label("QUESTION"), "?");
  EXPECT_EQ(punctuation_mark_for_label("comma"), ",");
  EXPECT_EQ(punctuation_mark_for_label("question_mark"), "?");
  EXPECT_EQ(punctuation_mark_for_label("B-PER"), "");
  EXPECT_EQ(punctuation_mark_for_label("逗号"), "");
  EXPECT_EQ(punctuation_mark_for_label("\xff"), "");  // invalid UTF-8 is not punctuation
}

TEST(FrozenModelLabelTest, PlusUNamesACapitalizingLabel) {
  const Label comma = label_for_name(",+U");
  EXPECT_EQ(comma.mark, ",");
  EXPECT_TRUE(comma.capitalize);
  const Label plain = label_for_name("O+U");
  EXPECT_EQ(plain.mark, "");
  EXPECT_TRUE(plain.capitalize);
  EXPECT_FALSE(label_for_name("+U").capitalize);  // nothing before the suffix: an ordinary (unknown) name
  EXPECT_FALSE(label_for_name(",").capitalize);
  EXPECT_EQ(label_for_name("COMMA+U").mark, ",");

  ModelMetadata metadata = halfserve::testing::tiny_model().metadata;
  metadata.labels = {label_for_name("O"), label_for_name(".+U")};
  const ModelMetadata back = metadata_from_strings(metadata_to_strings(metadata));
  ASSERT_EQ(back.labels.size(), 2u);
  EXPECT_FALSE(back.labels[0].capitalize);
  EXPECT_TRUE(back.labels[1].capitalize);
  EXPECT_EQ(back.labels[1].mark, ".");
}

TEST(FrozenModelLabelTest, SeedLabelsCarryTheirMarks) {
  const FrozenModel model = halfserve::testing::tiny_model();
  const std::vector<std::pair<std::string, std::string>> expected = {{"O", ""},   {"，", "，"}, {"。", "。"},
                                                                     {"？", "？"}, {"！", "！"}, {"、", "、"}};
  ASSERT_EQ(model.metadata.labels.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(model.metadata.labels[i].name, expected[i].first);
    EXPECT_EQ(model.metadata.labels[i].mark, expected[i].second);
  }
}

}  // namespace
}  // namespace halfserve
