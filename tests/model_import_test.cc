// Importing the model files people really have, end to end: real files written by TensorFlow, PyTorch and the
// safetensors library, and the errors a user sees for corrupt ones.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "halfserve/engine/bert_model.h"
#include "halfserve/import/model_source.h"
#include "halfserve/import/tf_graph.h"
#include "halfserve/util/error.h"
#include "test_support.h"

namespace halfserve {
namespace {

namespace fs = std::filesystem;
using testing::Contains;

float scalar(TensorSource& source, const std::string& name) {
  const LoadedTensor tensor = source.read(name);
  EXPECT_EQ(tensor.view.numel(), 1) << name;
  return tensor.view.float_at(0);
}

TEST(ModelImportTest, GoogleResearchCheckpointMatchesItsReferenceOutput) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const fs::path folder = fixtures / "keras_bert_tiny_ckpt";
  const FrozenModel model = import_model((folder / "bert_model.ckpt").string());
  EXPECT_EQ(model.metadata.provenance.source_format, "tf-checkpoint");
  EXPECT_FALSE(model.metadata.has_head());
  EXPECT_EQ(model.metadata.config.activation, Activation::gelu_tanh);  // google-research semantics
  EXPECT_EQ(model.metadata.config.num_heads, 4);                        // from bert_config.json
  EXPECT_EQ(model.metadata.tokenizer.vocab.size(), 15u);                // vocab.txt beside the checkpoint

  const auto expected = testing::read_json(folder / "expected_sequence_output.json");
  InputBatch in;
  in.batch = static_cast<int64_t>(expected["input_ids"].size());
  in.length = static_cast<int64_t>(expected["input_ids"][0].size());
  for (const auto& row : expected["input_ids"]) for (const auto& v : row) in.input_ids.push_back(v.get<int32_t>());
  for (const auto& row : expected["input_mask"]) for (const auto& v : row) in.attention_mask.push_back(v.get<int32_t>());
  for (const auto& row : expected["segment_ids"]) for (const auto& v : row) in.token_type_ids.push_back(v.get<int32_t>());
  Workspace workspace;
  const OutputBatch out = BertModel::from_model(model, {})->run(in, {false, false, true}, workspace);
  double worst = 0;
  for (int64_t b = 0; b < in.batch; ++b)
    for (int64_t t = 0; t < in.length; ++t) {
      if (in.attention_mask[b * in.length + t] == 0) continue;
      for (int64_t k = 0; k < 4; ++k)
        worst = std::max(worst, std::fabs(out.last_hidden_state[(b * in.length + t) * 4 + k] -
                                          expected["sequence_output"][b][t][k].get<double>()));
    }
  std::cout << "keras_bert_tiny_ckpt: worst last_hidden_state error " << worst << "\n";
  EXPECT_LE(worst, 1e-4);
}

TEST(ModelImportTest, TfServingSavedModelsShowVariablesAndSignatures) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const fs::path tf1 = fixtures / "tf_serving" / "saved_model_half_plus_two_cpu" / "00000123";
  const auto source = open_saved_model(tf1.string());
  EXPECT_EQ(source->tags(), std::vector<std::string>{"serve"});
  EXPECT_FLOAT_EQ(scalar(*source, "a"), 0.5f);
  EXPECT_FLOAT_EQ(scalar(*source, "b"), 2.0f);
  EXPECT_FLOAT_EQ(scalar(*source, "c"), 3.0f);
  const TfSignatureDef* serving = nullptr;
  for (const auto& definition : source->signature_defs())
    if (definition.name == "serving_default") serving = &definition;
  ASSERT_NE(serving, nullptr);
  ASSERT_EQ(serving->inputs.size(), 1u);
  EXPECT_EQ(serving->inputs[0].alias, "x");
  EXPECT_EQ(serving->inputs[0].tensor, "x:0");
  EXPECT_EQ(serving->outputs[0].alias, "y");
  EXPECT_EQ(serving->method_name, "tensorflow/serving/predict");

  const fs::path tf2 = fixtures / "tf_serving" / "saved_model_half_plus_two_tf2_cpu" / "00000123";
  const auto source2 = open_tensor_source(tf2.string(), SourceFormat::automatic);
  EXPECT_EQ(source2->format(), "saved-model");
  EXPECT_FLOAT_EQ(scalar(*source2, "a/.ATTRIBUTES/VARIABLE_VALUE"), 0.5f);
  EXPECT_FLOAT_EQ(scalar(*source2, "b/.ATTRIBUTES/VARIABLE_VALUE"), 2.0f);

  const fs::path tf0 = fixtures / "tf_serving" / "saved_model_half_plus_three" / "00000123";
  const auto source3 = open_saved_model(tf0.string());
  EXPECT_FLOAT_EQ(scalar(*source3, "a"), 0.5f);
  EXPECT_FLOAT_EQ(scalar(*source3, "b"), 3.0f);
}

TEST(ModelImportTest, FrozenGraphDefListsItsConstants) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const std::string path = (fixtures / "tf_frozen" / "regression_frozen.pb").string();
  EXPECT_EQ(detect_source_format(path), SourceFormat::graphdef);
  const auto source = open_graphdef(path);
  std::vector<std::string> names;
  for (const auto& info : source->tensors()) names.push_back(info.name);
  EXPECT_EQ(names, (std::vector<std::string>{"W", "b"}));
  EXPECT_TRUE(std::isfinite(scalar(*source, "W")));
  // Not a BERT: a clear error, not a crash.
  try {
    import_model(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "no BERT word-embedding table"));
  }
}

TEST(ModelImportTest, PytorchBinGivesTheSameFrozenWeightsAsSafetensors) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  const fs::path folder = fixtures / "torch_bert_tokcls";
  const FrozenModel from_bin = import_model((folder / "pytorch_model.bin").string());
  const FrozenModel from_safetensors = import_model((folder / "model.safetensors").string());
  EXPECT_EQ(from_bin.metadata.provenance.source_format, "torch");
  ASSERT_EQ(from_bin.tensors.names(), from_safetensors.tensors.names());
  for (const auto& name : from_bin.tensors.names()) {
    const TensorView& a = from_bin.tensors.at(name);
    const TensorView& b = from_safetensors.tensors.at(name);
    EXPECT_EQ(a.dtype, b.dtype) << name;
    EXPECT_EQ(a.shape, b.shape) << name;
    ASSERT_EQ(a.data.size(), b.data.size()) << name;
    EXPECT_TRUE(std::equal(a.data.begin(), a.data.end(), b.data.begin())) << name;
  }
  EXPECT_EQ(from_bin.metadata.labels.size(), 4u);
}

// Copies a fixture folder to a scratch folder that a test may damage.
fs::path scratch_copy(const fs::path& from, const testing::TempDir& dir) {
  const fs::path to = dir / from.filename().string();
  fs::copy(from, to, fs::copy_options::recursive);
  for (const auto& entry : fs::recursive_directory_iterator(to))
    fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
  return to;
}

void expect_convert_fails(const std::string& source, const testing::TempDir& dir, const std::vector<std::string>& fragments) {
  const fs::path output = dir / "out.safetensors";
  const auto result = testing::run_cli("convert '" + source + "' -o '" + output.string() + "'");
  EXPECT_EQ(result.exit_code, 1) << result.err;
  for (const auto& fragment : fragments) EXPECT_TRUE(Contains(result.err, fragment));
  EXPECT_FALSE(fs::exists(output));
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
}

TEST(ModelImportTest, CorruptSourcesAreClearErrorsWithNoOutput) {
  HALFSERVE_REQUIRE_FIXTURES(fixtures);
  testing::TempDir dir;
  const fs::path checkpoint = scratch_copy(fixtures / "keras_bert_tiny_ckpt", dir);
  const std::string prefix = (checkpoint / "bert_model.ckpt").string();

  // A flipped byte inside the data shard: the checksum names the tensor.
  const fs::path data = checkpoint / "bert_model.ckpt.data-00000-of-00001";
  {
    std::fstream file(data, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(0);
    char byte = 0;
    file.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x5a);
    file.seekp(0);
    file.write(&byte, 1);
  }
  expect_convert_fails(prefix, dir, {"checksum"});

  // A truncated index.
  fs::resize_file(checkpoint / "bert_model.ckpt.index", 100);
  expect_convert_fails(prefix, dir, {"bert_model.ckpt"});

  // A file that is no GraphDef (nor anything else).
  const fs::path junk = dir / "model.pb";
  std::ofstream(junk) << "this is not a protobuf graph, just text\n";
  expect_convert_fails(junk.string(), dir, {"unrecognised model file"});
  const auto forced = testing::run_cli("convert '" + junk.string() + "' --from graphdef -o '" + (dir / "x.safetensors").string() + "'");
  EXPECT_EQ(forced.exit_code, 1);
  EXPECT_TRUE(Contains(forced.err, "GraphDef"));
}

}  // namespace
}  // namespace halfserve
