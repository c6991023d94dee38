// Crafted model files that once crashed an importer or made it allocate gigabytes from a few bytes: each is now
// a one-line error naming the file, the tensor and the limit, raised before anything is sized by the claim.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "halfserve/format/safetensors.h"
#include "halfserve/import/model_source.h"
#include "halfserve/import/tf_graph.h"
#include "halfserve/util/error.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "test_support.h"

namespace halfserve {
namespace {

namespace fs = std::filesystem;
using testing::Contains;

std::string import_error(const fs::path& path) {
  try {
    import_model(path.string());
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << path << " imported without an error";
  return "";
}

// A Hugging Face folder holding the tiny model's tensors, with `edit` applied to the list first.
fs::path hf_folder(const testing::TempDir& dir, const std::function<void(std::vector<NamedTensor>&)>& edit) {
  static const FrozenModel model = testing::tiny_model();
  std::vector<NamedTensor> tensors;
  for (const auto& name : model.tensors.names()) tensors.push_back({name, model.tensors.at(name)});
  edit(tensors);
  SafetensorsLayout(tensors, {}).write((dir / "model.safetensors").string());
  std::ofstream(dir / "config.json") << R"({"model_type": "bert", "num_attention_heads": 4})";
  return dir.path();
}

NamedTensor& tensor_named(std::vector<NamedTensor>& tensors, const std::string& name) {
  for (auto& tensor : tensors)
    if (tensor.name == name) return tensor;
  throw Error("test model has no " + name);
}

const float kScalar = 1.0f;
const TensorView kScalarView{DType::f32, {}, std::as_bytes(std::span(&kScalar, 1))};

TEST(HostileImport, TheUneditedFolderImports) {
  testing::TempDir dir;
  EXPECT_NO_THROW(import_model(hf_folder(dir, [](auto&) {}).string()));
}

TEST(HostileImport, ScalarWhereATableBelongsIsAnError) {
  for (const std::string name : {"bert.embeddings.position_embeddings.weight", "classifier.weight",
                                 "bert.embeddings.token_type_embeddings.weight",
                                 "bert.encoder.layer.0.intermediate.dense.weight"}) {
    SCOPED_TRACE(name);
    testing::TempDir dir;
    const std::string error = import_error(hf_folder(dir, [&](auto& tensors) { tensor_named(tensors, name).view = kScalarView; }));
    EXPECT_TRUE(Contains(error, name));
    EXPECT_TRUE(Contains(error, "has shape [], expected 2 dimensions"));
  }
}

TEST(HostileImport, AbsurdLayerIndicesAreRefusedBeforeSizingAnything) {
  for (const std::string index : {"1000000000", "9223372036854775807", "99999999999999999999999", "1024"}) {
    SCOPED_TRACE(index);
    testing::TempDir dir;
    const std::string error = import_error(hf_folder(dir, [&](auto& tensors) {
      tensors.push_back({"bert.encoder.layer." + index + ".output.dense.bias", kScalarView});
    }));
    EXPECT_TRUE(Contains(error, "names encoder layer " + index));
    EXPECT_TRUE(Contains(error, "at most 1024 layers"));
  }
}

TEST(HostileImport, ATensorOfTheWrongShapeIsNamedBeforeItIsRead) {
  testing::TempDir dir;
  const std::vector<float> values(32 * 33, 0.5f);
  const std::string error = import_error(hf_folder(dir, [&](auto& tensors) {
    tensor_named(tensors, "bert.encoder.layer.1.attention.self.key.weight").view =
        TensorView{DType::f32, {32, 33}, std::as_bytes(std::span(values))};
  }));
  EXPECT_TRUE(Contains(error, "bert.encoder.layer.1.attention.self.key.weight has shape [32, 33]"));
  EXPECT_TRUE(Contains(error, "the architecture needs [32, 32]"));
}

// A GraphDef constant declaring 2^28 floats (1 GiB) with one value, and a wrongly sized tensor_content.
TEST(HostileImport, GraphConstantsFilledByRepetitionAreBounded) {
  testing::TempDir dir;
  tensorflow::GraphDef graph;
  auto add_const = [&](const std::string& name, int64_t size) -> tensorflow::TensorProto& {
    tensorflow::NodeDef* node = graph.add_node();
    node->set_name(name);
    node->set_op("Const");
    tensorflow::TensorProto& value = *(*node->mutable_attr())["value"].mutable_tensor();
    value.set_dtype(tensorflow::DT_FLOAT);
    value.mutable_tensor_shape()->add_dim()->set_size(size);
    return value;
  };
  add_const("bert/embeddings/huge", int64_t{1} << 28).add_float_val(0.5f);
  add_const("bert/embeddings/short_content", 16).set_tensor_content(std::string(12, '\0'));
  add_const("bert/embeddings/zeros", 1024);  // small implicit zeros stay as TensorFlow reads them
  const fs::path path = dir / "frozen.pb";
  std::ofstream(path, std::ios::binary) << graph.SerializeAsString();
  ASSERT_LT(fs::file_size(path), 200u);

  const auto source = open_graphdef(path.string());
  const auto error_of = [&](const std::string& name) {
    try {
      source->read(name);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string huge = error_of("bert/embeddings/huge");
  EXPECT_TRUE(Contains(huge, "bert/embeddings/huge"));
  EXPECT_TRUE(Contains(huge, "declares F32 [268435456] (1073741824 bytes) but carries 4 bytes"));
  EXPECT_TRUE(Contains(huge, "limited to 67108864 bytes"));
  EXPECT_TRUE(Contains(error_of("bert/embeddings/short_content"), "tensor_content holds 12 bytes"));
  const LoadedTensor zeros = source->read("bert/embeddings/zeros");
  EXPECT_EQ(zeros.view.numel(), 1024);
  EXPECT_EQ(zeros.view.float_at(1023), 0.0f);
}

}  // namespace
}  // namespace halfserve
