// Tests for src/serve/grpc_server.cc and tensor_proto_io.cc: TF Serving's gRPC API served from a ModelManager,
// called through real gRPC C++ stubs over TCP. Predict outputs must equal BertModel::run on the same inputs
// bit for bit; every bad request must get TF Serving's status code and a message naming the problem.
#include "halfserve/serve/grpc_server.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <future>
#include <limits>
#include <thread>

#include "halfserve/engine/bert_model.h"
#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/util/error.h"
#include "inference/grpc_predict_v2.grpc.pb.h"
#include "tensorflow_serving/apis/model_service.grpc.pb.h"
#include "tensorflow_serving/apis/prediction_service.grpc.pb.h"
#include "test_support.h"

namespace halfserve {
namespace {

namespace fs = std::filesystem;
namespace tfs = tensorflow::serving;
using tensorflow::TensorProto;
using testing::Contains;

constexpr size_t kMaxMessageBytes = 64 << 20;

// One model served for the whole suite: loading and warming it up is the slow part.
struct ServingFixture {
  halfserve::testing::TempDir base;
  std::string model_path;
  ServingMetrics metrics;
  std::unique_ptr<ModelManager> models;
  std::unique_ptr<GrpcServer> server;
  std::shared_ptr<const BertModel> reference;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<tfs::PredictionService::Stub> predictions;
  std::unique_ptr<tfs::ModelService::Stub> model_service;
  std::unique_ptr<inference::GRPCInferenceService::Stub> inference;

  ServingFixture() {
    FrozenModel model = halfserve::testing::tiny_model();
    // A second signature with its own names, as the seed's ac_forward has.
    Signature ac;
    ac.name = "ac_forward";
    ac.inputs = {{"input", InputRole::input_ids}, {"mask", InputRole::attention_mask}};
    ac.outputs = {{"punc_output", OutputRole::label_ids}, {"punc_probs", OutputRole::probabilities}};
    model.metadata.signatures.push_back(ac);
    fs::create_directories(base / "1");
    model_path = (base / "1" / "model.safetensors").string();
    save_frozen_model(model, model_path);
    reference = BertModel::load(model_path, EngineOptions{});

    ServedModelConfig config;
    config.name = "tiny";
    config.base_path = base.path().string();
    config.version_labels = {{"stable", 1}, {"canary", 9}};
    ModelManagerOptions options;
    options.poll_seconds = 0;
    options.metrics = &metrics;
    models = std::make_unique<ModelManager>(std::vector<ServedModelConfig>{config}, options);
    models->start();
    server = std::make_unique<GrpcServer>(*models, metrics, "127.0.0.1:0", kMaxMessageBytes);
    server->start();
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()), grpc::InsecureChannelCredentials());
    predictions = tfs::PredictionService::NewStub(channel);
    model_service = tfs::ModelService::NewStub(channel);
    inference = inference::GRPCInferenceService::NewStub(channel);
  }
  ~ServingFixture() {
    server->shutdown(std::chrono::milliseconds(1000));
    models->stop();
  }
};

// Client-side tensors, built the ways TF Serving clients build them.
enum class Encoding { typed, content };

TensorProto int_tensor(tensorflow::DataType dtype, int64_t rows, int64_t cols, const std::vector<int64_t>& values,
                       Encoding encoding) {
  TensorProto tensor;
  tensor.set_dtype(dtype);
  tensor.mutable_tensor_shape()->add_dim()->set_size(rows);
  tensor.mutable_tensor_shape()->add_dim()->set_size(cols);
  std::string content;
  for (const int64_t value : values) {
    if (dtype == tensorflow::DT_INT32) {
      const auto narrow = static_cast<int32_t>(value);
      if (encoding == Encoding::typed) tensor.add_int_val(narrow);
      content.append(reinterpret_cast<const char*>(&narrow), sizeof narrow);  // little-endian host
    } else {
      if (encoding == Encoding::typed) tensor.add_int64_val(value);
      content.append(reinterpret_cast<const char*>(&value), sizeof value);
    }
  }
  if (encoding == Encoding::content) tensor.set_tensor_content(content);
  return tensor;
}

std::vector<int64_t> shape_of(const TensorProto& tensor) {
  std::vector<int64_t> dims;
  for (const auto& dim : tensor.tensor_shape().dim()) dims.push_back(dim.size());
  return dims;
}

std::vector<float> floats_of(const TensorProto& tensor) {
  EXPECT_EQ(tensor.dtype(), tensorflow::DT_FLOAT);
  std::vector<float> values(tensor.tensor_content().size() / sizeof(float));
  std::memcpy(values.data(), tensor.tensor_content().data(), values.size() * sizeof(float));
  return values;
}

std::vector<int64_t> int64s_of(const TensorProto& tensor) {
  EXPECT_EQ(tensor.dtype(), tensorflow::DT_INT64);
  std::vector<int64_t> values(tensor.tensor_content().size() / sizeof(int64_t));
  std::memcpy(values.data(), tensor.tensor_content().data(), values.size() * sizeof(int64_t));
  return values;
}

// Two rows of different content, one padded: [2, 5].
const std::vector<int64_t> kIds = {2, 17, 45, 99, 3, 2, 250, 3, 0, 0};
const std::vector<int64_t> kMask = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
const std::vector<int64_t> kTypes = {0, 0, 0, 1, 1, 0, 0, 0, 0, 0};

InputBatch engine_batch(const std::vector<int64_t>& ids, const std::vector<int64_t>& mask,
                        const std::vector<int64_t>& types, int64_t rows, int64_t cols) {
  InputBatch batch{rows, cols, {}, {}, {}};
  batch.input_ids.assign(ids.begin(), ids.end());
  batch.attention_mask.assign(mask.begin(), mask.end());
  batch.token_type_ids.assign(types.begin(), types.end());
  return batch;
}

class GrpcServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { fixture_ = new ServingFixture(); }
  static void TearDownTestSuite() {
    delete fixture_;
    fixture_ = nullptr;
  }

  static tfs::PredictRequest predict_request(tensorflow::DataType dtype, Encoding encoding) {
    tfs::PredictRequest request;
    request.mutable_model_spec()->set_name("tiny");
    auto& inputs = *request.mutable_inputs();
    inputs["input_ids"] = int_tensor(dtype, 2, 5, kIds, encoding);
    inputs["attention_mask"] = int_tensor(dtype, 2, 5, kMask, encoding);
    inputs["token_type_ids"] = int_tensor(dtype, 2, 5, kTypes, encoding);
    return request;
  }

  static grpc::Status predict(const tfs::PredictRequest& request, tfs::PredictResponse& response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return fixture_->predictions->Predict(&context, request, &response);
  }

  static OutputBatch reference_run(const InputBatch& inputs) {
    Workspace workspace;
    return fixture_->reference->run(inputs, {true, true, false, true}, workspace);
  }

  // The response's logits and label_ids equal the engine's on the same inputs, exactly.
  static void expect_matches_engine(const tfs::PredictResponse& response, const InputBatch& inputs) {
    const OutputBatch expected = reference_run(inputs);
    const int64_t labels = static_cast<int64_t>(fixture_->reference->metadata().labels.size());
    ASSERT_EQ(response.outputs().count("logits"), 1u);
    ASSERT_EQ(response.outputs().count("label_ids"), 1u);
    const TensorProto& logits = response.outputs().at("logits");
    EXPECT_EQ(shape_of(logits), (std::vector<int64_t>{inputs.batch, inputs.length, labels}));
    EXPECT_EQ(floats_of(logits), expected.logits);
    const TensorProto& label_ids = response.outputs().at("label_ids");
    EXPECT_EQ(shape_of(label_ids), (std::vector<int64_t>{inputs.batch, inputs.length}));
    EXPECT_EQ(int64s_of(label_ids), std::vector<int64_t>(expected.label_ids.begin(), expected.label_ids.end()));
  }

  // The call failed with `code` and a message holding every fragment.
  static void expect_error(const grpc::Status& status, grpc::StatusCode code, const std::vector<std::string>& fragments) {
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    for (const auto& fragment : fragments) EXPECT_TRUE(Contains(status.error_message(), fragment));
  }

  static void expect_predict_error(const tfs::PredictRequest& request, grpc::StatusCode code,
                                   const std::vector<std::string>& fragments) {
    tfs::PredictResponse response;
    expect_error(predict(request, response), code, fragments);
  }

  static ServingFixture* fixture_;
};

ServingFixture* GrpcServerTest::fixture_ = nullptr;

TEST_F(GrpcServerTest, PredictInt32TypedFieldsMatchesEngine) {
  tfs::PredictResponse response;
  const grpc::Status status = predict(predict_request(tensorflow::DT_INT32, Encoding::typed), response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  expect_matches_engine(response, engine_batch(kIds, kMask, kTypes, 2, 5));
  EXPECT_EQ(response.outputs().size(), 2u);  // the signature's outputs: logits and label_ids
  EXPECT_EQ(response.model_spec().name(), "tiny");
  EXPECT_EQ(response.model_spec().version().value(), 1);
  EXPECT_EQ(response.model_spec().signature_name(), "serving_default");
}

TEST_F(GrpcServerTest, PredictInt64TensorContentMatchesEngine) {
  tfs::PredictResponse response;
  const grpc::Status status = predict(predict_request(tensorflow::DT_INT64, Encoding::content), response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  expect_matches_engine(response, engine_batch(kIds, kMask, kTypes, 2, 5));
}

TEST_F(GrpcServerTest, PredictAcceptsMixedDtypesAndEncodings) {
  tfs::PredictRequest request;
  request.mutable_model_spec()->set_name("tiny");
  (*request.mutable_inputs())["input_ids"] = int_tensor(tensorflow::DT_INT32, 2, 5, kIds, Encoding::content);
  (*request.mutable_inputs())["attention_mask"] = int_tensor(tensorflow::DT_INT64, 2, 5, kMask, Encoding::typed);
  tfs::PredictResponse response;
  const grpc::Status status = predict(request, response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  expect_matches_engine(response, engine_batch(kIds, kMask, std::vector<int64_t>(10, 0), 2, 5));
}

// Values are row-major [batch, length]: a [5, 2] tensor of the same values is a different batch, and each row's
// outputs are that row's.
TEST_F(GrpcServerTest, PredictReadsRowMajorBatchLength) {
  const std::vector<int64_t> ids = {2, 40, 41, 42, 3, 7, 8, 9, 10, 11, 12, 13};
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{3, 4}, {4, 3}, {1, 12}, {12, 1}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
    tfs::PredictRequest request;
    request.mutable_model_spec()->set_name("tiny");
    (*request.mutable_inputs())["input_ids"] = int_tensor(tensorflow::DT_INT64, rows, cols, ids, Encoding::typed);
    tfs::PredictResponse response;
    const grpc::Status status = predict(request, response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    expect_matches_engine(response, engine_batch(ids, std::vector<int64_t>(ids.size(), 1),
                                                 std::vector<int64_t>(ids.size(), 0), rows, cols));
  }
}

TEST_F(GrpcServerTest, PredictOutputFilterBySignatureAndRoleNames) {
  const InputBatch inputs = engine_batch(kIds, kMask, kTypes, 2, 5);
  const OutputBatch expected = reference_run(inputs);
  {
    tfs::PredictRequest request = predict_request(tensorflow::DT_INT32, Encoding::content);
    request.add_output_filter("logits");
    tfs::PredictResponse response;
    ASSERT_TRUE(predict(request, response).ok());
    ASSERT_EQ(response.outputs().size(), 1u);
    EXPECT_EQ(floats_of(response.outputs().at("logits")), expected.logits);
  }
  {
    // probabilities is not a serving_default output, but the model can produce it by role name.
    tfs::PredictRequest request = predict_request(tensorflow::DT_INT32, Encoding::content);
    request.add_output_filter("probabilities");
    request.add_output_filter("label_ids");
    tfs::PredictResponse response;
    const grpc::Status status = predict(request, response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.outputs().size(), 2u);
    const TensorProto& probabilities = response.outputs().at("probabilities");
    EXPECT_EQ(shape_of(probabilities), (std::vector<int64_t>{2, 5, 6}));
    EXPECT_EQ(floats_of(probabilities), expected.probabilities);
    EXPECT_EQ(int64s_of(response.outputs().at("label_ids")),
              std::vector<int64_t>(expected.label_ids.begin(), expected.label_ids.end()));
  }
}

TEST_F(GrpcServerTest, PredictNamedSignatureUsesItsNames) {
  tfs::PredictRequest request;
  request.mutable_model_spec()->set_name("tiny");
  request.mutable_model_spec()->set_signature_name("ac_forward");
  (*request.mutable_inputs())["input"] = int_tensor(tensorflow::DT_INT32, 2, 5, kIds, Encoding::typed);
  (*request.mutable_inputs())["mask"] = int_tensor(tensorflow::DT_INT32, 2, 5, kMask, Encoding::typed);
  tfs::PredictResponse response;
  const grpc::Status status = predict(request, response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const OutputBatch expected = reference_run(engine_batch(kIds, kMask, std::vector<int64_t>(10, 0), 2, 5));
  ASSERT_EQ(response.outputs().size(), 2u);
  EXPECT_EQ(int64s_of(response.outputs().at("punc_output")),
            std::vector<int64_t>(expected.label_ids.begin(), expected.label_ids.end()));
  EXPECT_EQ(floats_of(response.outputs().at("punc_probs")), expected.probabilities);
  EXPECT_EQ(response.model_spec().signature_name(), "ac_forward");

  request.add_output_filter("punc_output");
  tfs::PredictResponse filtered;
  ASSERT_TRUE(predict(request, filtered).ok());
  EXPECT_EQ(filtered.outputs().size(), 1u);
  EXPECT_EQ(filtered.outputs().count("punc_output"), 1u);
}

TEST_F(GrpcServerTest, PredictByVersionAndLabel) {
  tfs::PredictRequest request = predict_request(tensorflow::DT_INT32, Encoding::content);
  request.mutable_model_spec()->mutable_version()->set_value(1);
  tfs::PredictResponse by_version;
  ASSERT_TRUE(predict(request, by_version).ok());
  EXPECT_EQ(by_version.model_spec().version().value(), 1);

  request.mutable_model_spec()->clear_version();
  request.mutable_model_spec()->set_version_label("stable");
  tfs::PredictResponse by_label;
  const grpc::Status status = predict(request, by_label);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(by_label.model_spec().version().value(), 1);
  expect_matches_engine(by_label, engine_batch(kIds, kMask, kTypes, 2, 5));
}

TEST_F(GrpcServerTest, PredictModelSpecErrors) {
  tfs::PredictRequest request = predict_request(tensorflow::DT_INT32, Encoding::typed);
  {
    tfs::PredictRequest no_spec = request;
    no_spec.clear_model_spec();
    expect_predict_error(no_spec, grpc::StatusCode::INVALID_ARGUMENT, {"ModelSpec"});
  }
  {
    tfs::PredictRequest unknown = request;
    unknown.mutable_model_spec()->set_name("nope");
    expect_predict_error(unknown, grpc::StatusCode::NOT_FOUND, {"nope"});
  }
  {
    tfs::PredictRequest missing_version = request;
    missing_version.mutable_model_spec()->mutable_version()->set_value(7);
    expect_predict_error(missing_version, grpc::StatusCode::NOT_FOUND, {"7"});
  }
  {
    tfs::PredictRequest unknown_label = request;
    unknown_label.mutable_model_spec()->set_version_label("nightly");
    expect_predict_error(unknown_label, grpc::StatusCode::NOT_FOUND, {"nightly"});
  }
  {
    tfs::PredictRequest label_without_version = request;
    label_without_version.mutable_model_spec()->set_version_label("canary");  // names version 9, not loaded
    expect_predict_error(label_without_version, grpc::StatusCode::NOT_FOUND, {"9"});
  }
  {
    tfs::PredictRequest both = request;
    both.mutable_model_spec()->mutable_version()->set_value(1);
    both.mutable_model_spec()->set_version_label("stable");
    expect_predict_error(both, grpc::StatusCode::INVALID_ARGUMENT, {"version", "version_label"});
  }
  {
    tfs::PredictRequest bad_signature = request;
    bad_signature.mutable_model_spec()->set_signature_name("classify_me");
    expect_predict_error(bad_signature, grpc::StatusCode::INVALID_ARGUMENT, {"classify_me", "serving_default", "ac_forward"});
  }
}

TEST_F(GrpcServerTest, PredictInputErrors) {
  const auto base = predict_request(tensorflow::DT_INT32, Encoding::typed);
  auto with_input = [&](const std::string& name, const TensorProto& tensor) {
    tfs::PredictRequest request = base;
    (*request.mutable_inputs())[name] = tensor;
    return request;
  };
  using tensorflow::DT_INT32;
  using tensorflow::DT_INT64;
  const auto code = grpc::StatusCode::INVALID_ARGUMENT;

  expect_predict_error(with_input("segment_ids", int_tensor(DT_INT32, 2, 5, kTypes, Encoding::typed)), code,
                       {"segment_ids", "input_ids, attention_mask, token_type_ids"});
  {
    tfs::PredictRequest no_ids = base;
    no_ids.mutable_inputs()->erase("input_ids");
    expect_predict_error(no_ids, code, {"input_ids"});
  }
  {
    TensorProto rank1;
    rank1.set_dtype(DT_INT32);
    rank1.mutable_tensor_shape()->add_dim()->set_size(10);
    for (const int64_t id : kIds) rank1.add_int_val(static_cast<int32_t>(id));
    expect_predict_error(with_input("input_ids", rank1), code, {"input_ids", "rank 2", "rank 1"});
  }
  {
    TensorProto unknown_rank = int_tensor(DT_INT32, 2, 5, kIds, Encoding::typed);
    unknown_rank.mutable_tensor_shape()->set_unknown_rank(true);
    expect_predict_error(with_input("input_ids", unknown_rank), code, {"input_ids", "rank"});
  }
  {
    TensorProto short_typed = int_tensor(DT_INT32, 2, 5, kIds, Encoding::typed);
    short_typed.mutable_int_val()->RemoveLast();
    expect_predict_error(with_input("input_ids", short_typed), code, {"input_ids", "9 values", "[2, 5]"});
  }
  {
    TensorProto short_content = int_tensor(DT_INT64, 2, 5, kIds, Encoding::content);
    short_content.mutable_tensor_content()->resize(9 * sizeof(int64_t));
    expect_predict_error(with_input("input_ids", short_content), code, {"input_ids", "tensor_content", "[2, 5]"});
    TensorProto ragged_content = int_tensor(DT_INT32, 2, 5, kIds, Encoding::content);
    ragged_content.mutable_tensor_content()->push_back('\0');
    expect_predict_error(with_input("input_ids", ragged_content), code, {"input_ids", "41 bytes"});
  }
  {
    std::vector<int64_t> huge = kIds;
    huge[6] = int64_t{1} << 33;
    expect_predict_error(with_input("input_ids", int_tensor(DT_INT64, 2, 5, huge, Encoding::typed)), code,
                         {"input_ids", "[1, 1]", "int32"});
    huge[6] = std::numeric_limits<int64_t>::min();
    expect_predict_error(with_input("input_ids", int_tensor(DT_INT64, 2, 5, huge, Encoding::content)), code,
                         {"input_ids", "int32"});
  }
  {
    TensorProto floats;
    floats.set_dtype(tensorflow::DT_FLOAT);
    floats.mutable_tensor_shape()->add_dim()->set_size(1);
    floats.mutable_tensor_shape()->add_dim()->set_size(1);
    floats.add_float_val(2.0f);
    expect_predict_error(with_input("input_ids", floats), code, {"input_ids", "DT_FLOAT", "DT_INT32"});
  }
  {
    TensorProto negative = int_tensor(DT_INT32, 2, 5, kIds, Encoding::typed);
    negative.mutable_tensor_shape()->mutable_dim(0)->set_size(-1);
    expect_predict_error(with_input("input_ids", negative), code, {"input_ids", "negative"});
  }
  {
    const std::vector<int64_t> mask(10, 1);
    expect_predict_error(with_input("attention_mask", int_tensor(DT_INT32, 5, 2, mask, Encoding::typed)), code,
                         {"attention_mask", "[5, 2]", "[2, 5]"});
  }
  // What the engine's validation refuses arrives as INVALID_ARGUMENT too.
  {
    std::vector<int64_t> outside = kIds;
    outside[3] = 300;
    expect_predict_error(with_input("input_ids", int_tensor(DT_INT32, 2, 5, outside, Encoding::typed)), code,
                         {"300", "vocabulary"});
    std::vector<int64_t> bad_mask = kMask;
    bad_mask[0] = 2;
    expect_predict_error(with_input("attention_mask", int_tensor(DT_INT32, 2, 5, bad_mask, Encoding::typed)), code,
                         {"attention_mask"});
  }
  {
    const std::vector<int64_t> long_row(65, 5);
    tfs::PredictRequest too_long;
    too_long.mutable_model_spec()->set_name("tiny");
    (*too_long.mutable_inputs())["input_ids"] = int_tensor(DT_INT32, 1, 65, long_row, Encoding::content);
    expect_predict_error(too_long, code, {"65", "64"});
  }
}

TEST_F(GrpcServerTest, PredictOutputFilterErrors) {
  tfs::PredictRequest unknown = predict_request(tensorflow::DT_INT32, Encoding::typed);
  unknown.add_output_filter("embeddings");
  expect_predict_error(unknown, grpc::StatusCode::INVALID_ARGUMENT, {"embeddings"});

  tfs::PredictRequest twice = predict_request(tensorflow::DT_INT32, Encoding::typed);
  twice.add_output_filter("logits");
  twice.add_output_filter("logits");
  expect_predict_error(twice, grpc::StatusCode::INVALID_ARGUMENT, {"logits", "twice"});
}

TEST_F(GrpcServerTest, GetModelMetadataDescribesEverySignature) {
  tfs::GetModelMetadataRequest request;
  request.mutable_model_spec()->set_name("tiny");
  request.add_metadata_field("signature_def");
  tfs::GetModelMetadataResponse response;
  grpc::ClientContext context;
  const grpc::Status status = fixture_->predictions->GetModelMetadata(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.model_spec().name(), "tiny");
  EXPECT_EQ(response.model_spec().version().value(), 1);
  ASSERT_EQ(response.metadata().count("signature_def"), 1u);
  const google::protobuf::Any& any = response.metadata().at("signature_def");
  EXPECT_EQ(any.type_url(), "type.googleapis.com/tensorflow.serving.SignatureDefMap");
  tfs::SignatureDefMap signatures;
  ASSERT_TRUE(any.UnpackTo(&signatures));
  ASSERT_EQ(signatures.signature_def().size(), 2u);

  const tensorflow::SignatureDef& serving = signatures.signature_def().at("serving_default");
  EXPECT_EQ(serving.method_name(), "tensorflow/serving/predict");
  ASSERT_EQ(serving.inputs().size(), 3u);
  const tensorflow::TensorInfo& ids = serving.inputs().at("input_ids");
  EXPECT_EQ(ids.name(), "input_ids:0");
  EXPECT_EQ(ids.dtype(), tensorflow::DT_INT32);
  ASSERT_EQ(ids.tensor_shape().dim_size(), 2);
  EXPECT_EQ(ids.tensor_shape().dim(0).size(), -1);
  EXPECT_EQ(ids.tensor_shape().dim(1).size(), -1);
  ASSERT_EQ(serving.outputs().size(), 2u);
  const tensorflow::TensorInfo& logits = serving.outputs().at("logits");
  EXPECT_EQ(logits.dtype(), tensorflow::DT_FLOAT);
  ASSERT_EQ(logits.tensor_shape().dim_size(), 3);
  EXPECT_EQ(logits.tensor_shape().dim(2).size(), 6);
  const tensorflow::TensorInfo& label_ids = serving.outputs().at("label_ids");
  EXPECT_EQ(label_ids.dtype(), tensorflow::DT_INT64);
  EXPECT_EQ(label_ids.tensor_shape().dim_size(), 2);

  const tensorflow::SignatureDef& ac = signatures.signature_def().at("ac_forward");
  EXPECT_EQ(ac.inputs().at("mask").name(), "mask:0");
  EXPECT_EQ(ac.outputs().at("punc_output").dtype(), tensorflow::DT_INT64);
  EXPECT_EQ(ac.outputs().at("punc_probs").dtype(), tensorflow::DT_FLOAT);
}

TEST_F(GrpcServerTest, GetModelMetadataErrors) {
  auto call = [](const tfs::GetModelMetadataRequest& request) {
    tfs::GetModelMetadataResponse response;
    grpc::ClientContext context;
    return fixture_->predictions->GetModelMetadata(&context, request, &response);
  };
  tfs::GetModelMetadataRequest request;
  request.mutable_model_spec()->set_name("tiny");
  expect_error(call(request), grpc::StatusCode::INVALID_ARGUMENT, {"metadata_field"});
  request.add_metadata_field("signature_def");
  request.add_metadata_field("graph_def");
  expect_error(call(request), grpc::StatusCode::INVALID_ARGUMENT, {"graph_def", "not supported"});

  tfs::GetModelMetadataRequest unknown;
  unknown.mutable_model_spec()->set_name("nope");
  unknown.add_metadata_field("signature_def");
  expect_error(call(unknown), grpc::StatusCode::NOT_FOUND, {"nope"});
  unknown.clear_model_spec();
  expect_error(call(unknown), grpc::StatusCode::INVALID_ARGUMENT, {"ModelSpec"});
}

TEST_F(GrpcServerTest, GetModelStatusReportsAvailableVersion) {
  auto call = [](const tfs::GetModelStatusRequest& request, tfs::GetModelStatusResponse& response) {
    grpc::ClientContext context;
    return fixture_->model_service->GetModelStatus(&context, request, &response);
  };
  tfs::GetModelStatusRequest request;
  request.mutable_model_spec()->set_name("tiny");
  tfs::GetModelStatusResponse response;
  const grpc::Status status = call(request, response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.model_version_status_size(), 1);
  const tfs::ModelVersionStatus& version = response.model_version_status(0);
  EXPECT_EQ(version.version(), 1);
  EXPECT_EQ(version.state(), tfs::ModelVersionStatus::AVAILABLE);
  EXPECT_EQ(version.status().error_code(), 0);
  EXPECT_EQ(version.status().error_message(), "");

  request.mutable_model_spec()->mutable_version()->set_value(1);
  tfs::GetModelStatusResponse one;
  ASSERT_TRUE(call(request, one).ok());
  EXPECT_EQ(one.model_version_status_size(), 1);

  tfs::GetModelStatusResponse ignored;
  request.mutable_model_spec()->mutable_version()->set_value(5);
  expect_error(call(request, ignored), grpc::StatusCode::NOT_FOUND, {"5"});
  request.mutable_model_spec()->clear_version();
  request.mutable_model_spec()->set_name("nope");
  expect_error(call(request, ignored), grpc::StatusCode::NOT_FOUND, {"nope"});
  request.clear_model_spec();
  expect_error(call(request, ignored), grpc::StatusCode::INVALID_ARGUMENT, {"ModelSpec"});
}

TEST_F(GrpcServerTest, UndeclaredTfServingMethodsAreUnimplemented) {
  grpc::GenericStub stub(fixture_->channel);
  for (const char* method : {"/tensorflow.serving.PredictionService/Classify",
                             "/tensorflow.serving.PredictionService/MultiInference",
                             "/tensorflow.serving.ModelService/HandleReloadConfigRequest"}) {
    SCOPED_TRACE(method);
    grpc::ClientContext context;
    grpc::Slice empty_message("");  // the bytes of an empty request message
    grpc::ByteBuffer request(&empty_message, 1), response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status status) { done.set_value(std::move(status)); });
    EXPECT_EQ(done.get_future().get().error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
}

TEST_F(GrpcServerTest, ConcurrentClientsGetTheirOwnOutputs) {
  // Each client sends a different first token, so swapped replies would show. The references are computed first,
  // one at a time: the promise under test is the server's (same request, same bytes, whatever else it is running;
  // docs/engine.md), so the reference itself must not be computed under the same load.
  constexpr int kClients = 8, kCalls = 5;
  std::vector<tfs::PredictRequest> requests(kClients);
  std::vector<std::vector<float>> expected(kClients);
  for (int client = 0; client < kClients; ++client) {
    std::vector<int64_t> ids = kIds;
    ids[1] = 20 + client;
    requests[client].mutable_model_spec()->set_name("tiny");
    (*requests[client].mutable_inputs())["input_ids"] = int_tensor(tensorflow::DT_INT64, 2, 5, ids, Encoding::content);
    (*requests[client].mutable_inputs())["attention_mask"] = int_tensor(tensorflow::DT_INT64, 2, 5, kMask, Encoding::content);
    expected[client] = reference_run(engine_batch(ids, kMask, std::vector<int64_t>(10, 0), 2, 5)).logits;
  }
  // What each reply was, for the failure message: OK and equal, a failed call, another client's logits, or
  // different numbers (and by how much).
  std::vector<std::vector<std::string>> mismatches(kClients);
  std::vector<std::thread> clients;
  for (int client = 0; client < kClients; ++client) {
    clients.emplace_back([&, client] {
      for (int call = 0; call < kCalls; ++call) {
        tfs::PredictResponse response;
        const grpc::Status status = predict(requests[client], response);
        if (!status.ok()) {
          mismatches[client].push_back("call failed: " + status.error_message());
          continue;
        }
        const std::vector<float> logits = floats_of(response.outputs().at("logits"));
        if (logits == expected[client]) continue;
        const auto other = std::find(expected.begin(), expected.end(), logits);
        if (other != expected.end()) {
          mismatches[client].push_back("got client " + std::to_string(other - expected.begin()) + "'s logits");
          continue;
        }
        double worst = 0;
        for (size_t i = 0; i < std::min(logits.size(), expected[client].size()); ++i)
          worst = std::max(worst, std::fabs(static_cast<double>(logits[i]) - expected[client][i]));
        mismatches[client].push_back("logits differ, worst by " + std::to_string(worst) + " over " +
                                     std::to_string(logits.size()) + " values");
      }
    });
  }
  for (auto& client : clients) client.join();
  for (int client = 0; client < kClients; ++client)
    for (const std::string& mismatch : mismatches[client]) ADD_FAILURE() << "client " << client << ": " << mismatch;
}

TEST_F(GrpcServerTest, RecordsRequestCountAndLatency) {
  tfs::PredictResponse response;
  ASSERT_TRUE(predict(predict_request(tensorflow::DT_INT32, Encoding::typed), response).ok());
  tfs::PredictRequest bad = predict_request(tensorflow::DT_INT32, Encoding::typed);
  bad.mutable_model_spec()->set_signature_name("nope");
  EXPECT_FALSE(predict(bad, response).ok());
  const std::string text = fixture_->metrics.prometheus_text();
  EXPECT_TRUE(Contains(text, R"(:tensorflow:serving:request_count{model_name="tiny",status="OK"})"));
  EXPECT_TRUE(Contains(text, R"(:tensorflow:serving:request_count{model_name="tiny",status="INVALID_ARGUMENT"})"));
  EXPECT_TRUE(Contains(text, R"(model_name="tiny",API="predict",entrypoint="GRPC")"));
}

TEST_F(GrpcServerTest, RefusesMessagesOverTheLimit) {
  GrpcServer small(*fixture_->models, fixture_->metrics, "127.0.0.1:0", 1024);
  small.start();
  auto stub = tfs::PredictionService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(small.port()), grpc::InsecureChannelCredentials()));
  tfs::PredictRequest request;
  request.mutable_model_spec()->set_name("tiny");
  (*request.mutable_inputs())["input_ids"] =
      int_tensor(tensorflow::DT_INT64, 4, 64, std::vector<int64_t>(256, 5), Encoding::content);
  tfs::PredictResponse response;
  grpc::ClientContext context;
  EXPECT_EQ(stub->Predict(&context, request, &response).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // A small request whose reply is over the limit: refused with a message saying so.
  tfs::PredictRequest short_request;
  short_request.mutable_model_spec()->set_name("tiny");
  (*short_request.mutable_inputs())["input_ids"] =
      int_tensor(tensorflow::DT_INT32, 2, 32, std::vector<int64_t>(64, 5), Encoding::content);
  short_request.add_output_filter("probabilities");
  short_request.add_output_filter("last_hidden_state");
  ASSERT_LT(short_request.ByteSizeLong(), 1024u);
  grpc::ClientContext short_context;
  expect_error(stub->Predict(&short_context, short_request, &response), grpc::StatusCode::RESOURCE_EXHAUSTED,
               {"reply of", "1024"});
  small.shutdown(std::chrono::milliseconds(100));
  small.shutdown(std::chrono::milliseconds(100));  // idempotent
}

TEST_F(GrpcServerTest, StartThrowsWhenThePortIsTaken) {
  GrpcServer second(*fixture_->models, fixture_->metrics, "127.0.0.1:" + std::to_string(fixture_->server->port()),
                    kMaxMessageBytes);
  EXPECT_THROW(second.start(), Error);
  EXPECT_EQ(second.port(), 0);
  GrpcServer malformed(*fixture_->models, fixture_->metrics, "no-such-host.invalid:99999", kMaxMessageBytes);
  EXPECT_THROW(malformed.start(), Error);
}

TEST_F(GrpcServerTest, ABurstOfThreeHundredCallsWaitsInsteadOfFailing) {
  // Before the callback API, a sync server capped at 256 threads refused 45 of 300 concurrent calls with
  // "Server Threadpool Exhausted". With 4 call threads, 300 calls at once must all wait their turn and succeed.
  GrpcServer small(*fixture_->models, fixture_->metrics, "127.0.0.1:0", kMaxMessageBytes, 4);
  small.start();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(small.port()), grpc::InsecureChannelCredentials());
  auto stub = tfs::PredictionService::NewStub(channel);
  const tfs::PredictRequest request = predict_request(tensorflow::DT_INT32, Encoding::typed);
  std::atomic<int> ok = 0;
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> clients;
  for (int c = 0; c < 300; ++c)
    clients.emplace_back([&] {
      tfs::PredictResponse response;
      grpc::ClientContext context;
      const grpc::Status status = stub->Predict(&context, request, &response);
      if (status.ok()) {
        ++ok;
        return;
      }
      std::lock_guard lock(failures_mutex);
      failures.push_back(status.error_message());
    });
  for (auto& client : clients) client.join();
  EXPECT_EQ(ok.load(), 300) << (failures.empty() ? "" : failures.front());
  small.shutdown(std::chrono::milliseconds(100));
}

TEST_F(GrpcServerTest, OneCallThreadServesAndNoneIsRefused) {
  EXPECT_THROW(GrpcServer(*fixture_->models, fixture_->metrics, "127.0.0.1:0", kMaxMessageBytes, 0), Error);
  GrpcServer smallest(*fixture_->models, fixture_->metrics, "127.0.0.1:0", kMaxMessageBytes, 1);
  smallest.start();
  auto stub = tfs::PredictionService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(smallest.port()), grpc::InsecureChannelCredentials()));
  tfs::PredictResponse response;
  grpc::ClientContext context;
  const grpc::Status status = stub->Predict(&context, predict_request(tensorflow::DT_INT32, Encoding::typed), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  smallest.shutdown(std::chrono::milliseconds(100));
}

// The v2 protocol's ModelInfer request for the suite's [2, 5] inputs: typed contents, or raw little-endian bytes.
inference::ModelInferRequest infer_request(const std::string& datatype, bool raw) {
  inference::ModelInferRequest request;
  request.set_model_name("tiny");
  request.set_id("request-7");
  const std::pair<const char*, const std::vector<int64_t>*> inputs[] = {
      {"input_ids", &kIds}, {"attention_mask", &kMask}, {"token_type_ids", &kTypes}};
  for (const auto& [name, values] : inputs) {
    auto& tensor = *request.add_inputs();
    tensor.set_name(name);
    tensor.set_datatype(datatype);
    tensor.add_shape(2);
    tensor.add_shape(5);
    std::string bytes;
    for (const int64_t value : *values) {
      if (datatype == "INT32") {
        const auto narrow = static_cast<int32_t>(value);
        if (!raw) tensor.mutable_contents()->add_int_contents(narrow);
        bytes.append(reinterpret_cast<const char*>(&narrow), sizeof narrow);
      } else {
        if (!raw) tensor.mutable_contents()->add_int64_contents(value);
        bytes.append(reinterpret_cast<const char*>(&value), sizeof value);
      }
    }
    if (raw) request.add_raw_input_contents(bytes);
  }
  return request;
}

grpc::Status model_infer(const inference::ModelInferRequest& request, inference::ModelInferResponse& response,
                         inference::GRPCInferenceService::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return stub.ModelInfer(&context, request, &response);
}

TEST_F(GrpcServerTest, V2ModelInferMatchesEngineForEveryEncoding) {
  const OutputBatch expected = reference_run(engine_batch(kIds, kMask, kTypes, 2, 5));
  const auto labels = static_cast<int64_t>(fixture_->reference->metadata().labels.size());
  for (const std::string datatype : {"INT32", "INT64"}) {
    for (const bool raw : {false, true}) {
      SCOPED_TRACE(datatype + (raw ? " raw" : " contents"));
      inference::ModelInferResponse response;
      const grpc::Status status = model_infer(infer_request(datatype, raw), response, *fixture_->inference);
      ASSERT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(response.model_name(), "tiny");
      EXPECT_EQ(response.model_version(), "1");
      EXPECT_EQ(response.id(), "request-7");
      ASSERT_EQ(response.outputs_size(), 2);
      ASSERT_EQ(response.raw_output_contents_size(), 2);
      EXPECT_EQ(response.outputs(0).name(), "logits");
      EXPECT_EQ(response.outputs(0).datatype(), "FP32");
      EXPECT_EQ(std::vector<int64_t>(response.outputs(0).shape().begin(), response.outputs(0).shape().end()),
                (std::vector<int64_t>{2, 5, labels}));
      std::vector<float> logits(response.raw_output_contents(0).size() / sizeof(float));
      std::memcpy(logits.data(), response.raw_output_contents(0).data(), logits.size() * sizeof(float));
      EXPECT_EQ(logits, expected.logits);
      EXPECT_EQ(response.outputs(1).name(), "label_ids");
      EXPECT_EQ(response.outputs(1).datatype(), "INT64");
      std::vector<int64_t> label_ids(response.raw_output_contents(1).size() / sizeof(int64_t));
      std::memcpy(label_ids.data(), response.raw_output_contents(1).data(), label_ids.size() * sizeof(int64_t));
      EXPECT_EQ(label_ids, std::vector<int64_t>(expected.label_ids.begin(), expected.label_ids.end()));
    }
  }
}

TEST_F(GrpcServerTest, V2ModelInferErrorsNameTheProblem) {
  auto& stub = *fixture_->inference;
  const auto expect_infer_error = [&](const inference::ModelInferRequest& request, grpc::StatusCode code,
                                      const std::vector<std::string>& fragments) {
    inference::ModelInferResponse response;
    expect_error(model_infer(request, response, stub), code, fragments);
  };
  auto request = infer_request("INT32", true);
  request.set_model_name("nope");
  expect_infer_error(request, grpc::StatusCode::NOT_FOUND, {"nope"});
  request = infer_request("INT32", true);
  request.set_model_version("9");
  expect_infer_error(request, grpc::StatusCode::NOT_FOUND, {"9"});
  request.set_model_version("latest");
  expect_infer_error(request, grpc::StatusCode::INVALID_ARGUMENT, {"latest", "version"});
  request = infer_request("INT32", true);
  request.mutable_inputs(1)->set_name("segment_mask");
  expect_infer_error(request, grpc::StatusCode::INVALID_ARGUMENT, {"segment_mask", "input_ids"});
  request = infer_request("INT32", true);
  request.mutable_inputs(0)->set_datatype("FP32");
  expect_infer_error(request, grpc::StatusCode::INVALID_ARGUMENT, {"input_ids", "FP32", "INT32 or INT64"});
  request = infer_request("INT64", true);
  request.set_raw_input_contents(0, request.raw_input_contents(0).substr(8));
  expect_infer_error(request, grpc::StatusCode::INVALID_ARGUMENT, {"input_ids", "72 bytes", "needs 80"});
  request = infer_request("INT32", false);
  request.mutable_inputs(0)->set_shape(0, 3);
  expect_infer_error(request, grpc::StatusCode::INVALID_ARGUMENT, {"input_ids", "10 values", "needs 15"});
  request = infer_request("INT32", false);
  request.mutable_inputs(0)->mutable_contents()->set_int_contents(1, 1 << 30);
  expect_infer_error(request, grpc::StatusCode::INVALID_ARGUMENT, {"input_ids", "1073741824"});
  request = infer_request("INT32", true);
  request.add_outputs()->set_name("scores");
  expect_infer_error(request, grpc::StatusCode::INVALID_ARGUMENT, {"scores"});
}

TEST_F(GrpcServerTest, V2HealthAndMetadata) {
  auto& stub = *fixture_->inference;
  grpc::ClientContext live_context, ready_context, metadata_context, model_ready_context, unknown_context;
  inference::ServerLiveResponse live;
  ASSERT_TRUE(stub.ServerLive(&live_context, {}, &live).ok());
  EXPECT_TRUE(live.live());
  inference::ServerReadyResponse ready;
  ASSERT_TRUE(stub.ServerReady(&ready_context, {}, &ready).ok());
  EXPECT_TRUE(ready.ready());
  inference::ModelReadyRequest model_ready_request;
  model_ready_request.set_name("tiny");
  inference::ModelReadyResponse model_ready;
  ASSERT_TRUE(stub.ModelReady(&model_ready_context, model_ready_request, &model_ready).ok());
  EXPECT_TRUE(model_ready.ready());
  inference::ModelMetadataRequest metadata_request;
  metadata_request.set_name("tiny");
  inference::ModelMetadataResponse metadata;
  ASSERT_TRUE(stub.ModelMetadata(&metadata_context, metadata_request, &metadata).ok());
  EXPECT_EQ(metadata.name(), "tiny");
  ASSERT_EQ(metadata.versions_size(), 1);
  EXPECT_EQ(metadata.versions(0), "1");
  ASSERT_EQ(metadata.inputs_size(), 3);
  EXPECT_EQ(metadata.inputs(0).name(), "input_ids");
  EXPECT_EQ(metadata.inputs(0).datatype(), "INT32");
  EXPECT_EQ(std::vector<int64_t>(metadata.inputs(0).shape().begin(), metadata.inputs(0).shape().end()),
            (std::vector<int64_t>{-1, -1}));
  ASSERT_EQ(metadata.outputs_size(), 2);
  EXPECT_EQ(metadata.outputs(1).datatype(), "INT64");
  metadata_request.set_name("nope");
  expect_error(stub.ModelMetadata(&unknown_context, metadata_request, &metadata), grpc::StatusCode::NOT_FOUND, {"nope"});
}

}  // namespace
}  // namespace halfserve
