#include <gtest/gtest.h>

#include <fstream>

#include "halfserve/format/bert_tensors.h"
#include "halfserve/import/model_source.h"
#include "halfserve/import/model_source.h"
#include "halfserve/util/error.h"
#include "test_support.h"

namespace halfserve {
namespace {

TEST(HfImportTest, TokenClassifierWithBertPrefix) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const FrozenModel model = import_model((fixtures / "torch_bert_tokcls").string());
  const ModelMetadata& m = model.metadata;
  EXPECT_EQ(m.config.num_layers, 2);
  EXPECT_EQ(m.config.hidden_size, 32);
  EXPECT_EQ(m.config.num_heads, 4);
  EXPECT_EQ(m.config.intermediate_size, 64);
  EXPECT_EQ(m.config.vocab_size, 57);
  EXPECT_EQ(m.config.activation, Activation::gelu_erf);
  ASSERT_EQ(m.labels.size(), 4u);
  EXPECT_EQ(m.labels[0].name, "O");
  EXPECT_EQ(m.labels[0].mark, "");
  EXPECT_EQ(m.labels[1].mark, "，");
  EXPECT_EQ(m.labels[3].mark, "？");
  EXPECT_EQ(m.tokenizer.vocab.size(), 57u);
  EXPECT_EQ(m.tokenizer.vocab[2], "[CLS]");
  EXPECT_EQ(m.default_signature().name, "serving_default");
  EXPECT_EQ(model.tensors.size(), expected_bert_tensors(m.config, 4).size());
  // Same bytes as the source tensor (weights keep their [out, in] layout).
  const TensorView& query = model.tensors.at("bert.encoder.layer.0.attention.self.query.weight");
  EXPECT_EQ(query.shape, (Shape{32, 32}));
}

TEST(HfImportTest, UnprefixedEncoderWithoutHead) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const FrozenModel model = import_model((fixtures / "hf_tiny_bert").string());
  EXPECT_FALSE(model.metadata.has_head());
  EXPECT_EQ(model.metadata.config.vocab_size, 256);
  EXPECT_EQ(model.metadata.config.max_positions, 128);
  EXPECT_TRUE(model.tensors.contains("bert.embeddings.word_embeddings.weight"));
  ASSERT_EQ(model.metadata.default_signature().outputs.size(), 1u);
  EXPECT_EQ(model.metadata.default_signature().outputs[0].second, OutputRole::last_hidden_state);
}

TEST(HfImportTest, WeightsFileBesideConfigIsDetected) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const auto path = (fixtures / "torch_bert_tokcls" / "model.safetensors").string();
  EXPECT_EQ(detect_source_format(path), SourceFormat::hf);
  EXPECT_EQ(detect_source_format((fixtures / "torch_bert_tokcls").string()), SourceFormat::hf);
}

TEST(HfImportTest, ClearErrors) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  testing::TempDir dir;
  EXPECT_THROW(import_model(dir.path().string()), Error);  // an empty folder
  std::ofstream(dir / "config.json") << R"({"model_type": "bert", "hidden_size": 32})";
  std::ofstream(dir / "model.safetensors") << "not a safetensors file";
  try {
    import_model(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(testing::Contains(e.what(), "model.safetensors"));
    EXPECT_TRUE(testing::Contains(e.what(), "invalid safetensors file"));
  }
  std::filesystem::remove(dir / "model.safetensors");
  std::filesystem::copy_file(fixtures / "torch_bert_tokcls" / "model.safetensors", dir / "model.safetensors");
  // Sizes missing from the config come from the shapes; the head count cannot (hidden 32 is not 64 x heads).
  try {
    import_model(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(testing::Contains(e.what(), "attention heads cannot be inferred"));
  }
  std::ofstream(dir / "config.json") << R"({"model_type": "roberta"})";
  try {
    import_model(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(testing::Contains(e.what(), "roberta"));
  }
}

TEST(HfImportTest, Id2LabelMustMatchClassifier) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  testing::TempDir dir;
  for (const char* name : {"vocab.txt", "model.safetensors"})
    std::filesystem::copy_file(fixtures / "torch_bert_tokcls" / name, dir / name);
  auto config = testing::read_json(fixtures / "torch_bert_tokcls" / "config.json");
  config["id2label"] = {{"0", "O"}, {"1", "，"}};
  std::ofstream(dir / "config.json") << config.dump();
  try {
    import_model(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("id2label has 2 labels"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace halfserve
