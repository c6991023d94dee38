// The v2 protocol's REST wire format on its own: infer bodies (JSON tensors, flat or nested, and the binary tensor
// extension) read into requests, every malformed body refused with a message naming the problem, replies written
// with JSON or binary outputs, and the /v2 routes.
#include "serve/rest_v2.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "halfserve/util/error.h"
#include "serve/rest_routes.h"
#include "test_support.h"

namespace halfserve::rest {
namespace {

using nlohmann::json;
using testing::Contains;

template <typename Value>
std::string little_endian(const std::vector<Value>& values) {
  std::string bytes(values.size() * sizeof(Value), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

void expect_refused(const std::string& body, const std::vector<std::string>& fragments,
                    const std::string& header_length = "") {
  SCOPED_TRACE(body.substr(0, 200));
  try {
    read_infer_request(body, header_length);
    ADD_FAILURE() << "accepted";
  } catch (const InvalidArgument& error) {
    for (const std::string& fragment : fragments) EXPECT_TRUE(Contains(error.what(), fragment)) << fragment;
  }
}

TEST(RestV2Reader, ReadsJsonTensorsFlatOrNested) {
  const std::string body = R"({"id": "abc", "inputs": [
      {"name": "input_ids", "shape": [2, 3], "datatype": "INT64", "data": [101, 7, 102, 101, 8, 102]},
      {"datatype": "INT32", "name": "attention_mask", "data": [[1, 1, 1], [1, 1, 0]], "shape": [2, 3],
       "parameters": {"unrelated": {"nested": [1, 2]}}}],
    "outputs": [{"name": "label_ids", "parameters": {"binary_data": true}}, {"name": "logits"}],
    "parameters": {"binary_data_output": false, "priority": 3}})";
  const v2::InferRequest request = read_infer_request(body, "");
  EXPECT_EQ(request.id, "abc");
  ASSERT_EQ(request.inputs.size(), 2u);
  EXPECT_EQ(request.inputs[0].name, "input_ids");
  EXPECT_EQ(request.inputs[0].matrix.rows, 2);
  EXPECT_EQ(request.inputs[0].matrix.cols, 3);
  EXPECT_EQ(request.inputs[0].matrix.values, (std::vector<int32_t>{101, 7, 102, 101, 8, 102}));
  EXPECT_EQ(request.inputs[1].matrix.values, (std::vector<int32_t>{1, 1, 1, 1, 1, 0}));
  ASSERT_EQ(request.outputs.size(), 2u);
  EXPECT_EQ(request.outputs[0].name, "label_ids");
  EXPECT_TRUE(request.outputs[0].binary);
  EXPECT_FALSE(request.outputs[1].binary);
  EXPECT_FALSE(request.binary_outputs);
}

TEST(RestV2Reader, ReadsBinaryTensorsAfterTheJsonHeader) {
  const std::string header = R"({"inputs": [
      {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "parameters": {"binary_data_size": 24}},
      {"name": "attention_mask", "shape": [1, 3], "datatype": "INT32", "data": [1, 1, 0]},
      {"name": "token_type_ids", "shape": [1, 3], "datatype": "INT32", "parameters": {"binary_data_size": 12}}],
    "parameters": {"binary_data_output": true}})";
  const std::string body = header + little_endian<int64_t>({101, 9, 102}) + little_endian<int32_t>({0, 1, 1});
  const v2::InferRequest request = read_infer_request(body, std::to_string(header.size()));
  ASSERT_EQ(request.inputs.size(), 3u);
  EXPECT_EQ(request.inputs[0].matrix.values, (std::vector<int32_t>{101, 9, 102}));
  EXPECT_EQ(request.inputs[1].matrix.values, (std::vector<int32_t>{1, 1, 0}));
  EXPECT_EQ(request.inputs[2].matrix.values, (std::vector<int32_t>{0, 1, 1}));
  EXPECT_TRUE(request.binary_outputs);
}

TEST(RestV2Reader, RefusesWhatItCannotRead) {
  const std::string ids = R"({"name": "input_ids", "shape": [1, 2], "datatype": "INT32", "data": [1, 2]})";
  expect_refused(R"({"inputs": [)" + ids, {"malformed JSON"});
  expect_refused(R"([1, 2])", {"JSON object"});
  expect_refused(R"({"outputs": []})", {"no \"inputs\""});
  expect_refused(R"({"inputs": {"input_ids": [1]}})", {"\"inputs\" must be a list"});
  expect_refused(R"({"inputs": [[1, 2]]})", {"inputs[0]", "object"});
  expect_refused(R"({"inputs": [{"shape": [1, 2], "datatype": "INT32", "data": [1, 2]}]})", {"inputs[0]", "no name"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "datatype": "INT32", "data": [1, 2]}]})", {"no shape"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "data": [1, 2]}]})", {"no datatype"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})",
                 {"input_ids", "FP32", "INT32 or INT64"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [2], "datatype": "INT32", "data": [1, 2]}]})",
                 {"input_ids", "[2]", "[batch, length]"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [-1, 2], "datatype": "INT32", "data": [1, 2]}]})",
                 {"shape", "non-negative"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "INT32", "data": [1, 2]}]})",
                 {"input_ids", "2 values", "needs 3"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT32", "data": [1, "2"]}]})",
                 {"data[1]", "not an integer"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 4294967296]}]})",
                 {"4294967296", "int32"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT32", "data": [1, 2.5]}]})",
                 {"data[1]", "not an integer"});
  expect_refused(R"({"inputs": [{"name": "input_ids", "shape": [100000, 100000], "datatype": "INT32", "data": []}]})",
                 {"input_ids", "more than"});
  expect_refused(R"({"id": 7, "inputs": [)" + ids + "]}", {"\"id\" must be a string"});
  expect_refused(R"({"inputs": [)" + ids + R"(], "outputs": [{"name": "logits", "parameters": {"classification": 3}}]})",
                 {"classification"});
  expect_refused(R"({"inputs": [)" + ids + R"(], "outputs": [{"parameters": {}}]})", {"outputs[0]", "no name"});
  expect_refused(R"({"inputs": [)" + ids + R"(], "parameters": {"binary_data_output": "yes"}})",
                 {"binary_data_output", "true or false"});
  expect_refused(std::string(R"({"inputs": [)") + std::string(100000, '[') , {"request refused", "nest"});
}

TEST(RestV2Reader, RefusesBinarySizesThatDoNotAddUp) {
  const std::string header =
      R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT32", "parameters": {"binary_data_size": 8}}]})";
  const std::string values = little_endian<int32_t>({101, 102});
  // Without the header, binary sizes have nowhere to point.
  expect_refused(header, {"binary_data_size", kInferenceHeaderLength});
  expect_refused(header + values, {"malformed JSON"}, "");
  expect_refused(header + values.substr(0, 4), {"declares 8 bytes", "only 4 remain"}, std::to_string(header.size()));
  expect_refused(header + values + "xx", {"2 bytes of binary data follow"}, std::to_string(header.size()));
  expect_refused(header + values, {kInferenceHeaderLength, "exceeds"}, "100000");
  expect_refused(header + values, {kInferenceHeaderLength, "not a byte count"}, "12abc");
  const std::string wrong_size =
      R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "parameters": {"binary_data_size": 8}}]})";
  expect_refused(wrong_size + values, {"input_ids", "8 bytes", "needs 16"}, std::to_string(wrong_size.size()));
}

TEST(RestV2Writer, WritesJsonAndBinaryOutputs) {
  v2::InferResponse response;
  response.model_name = "punct";
  response.model_version = "3";
  response.id = "x\"y";
  response.values.batch = 1;
  response.values.length = 2;
  response.values.logits = {0.5f, -1.0f, 2.25f, 3.0f};
  response.values.label_ids = {0, 1};
  response.outputs = {{"logits", OutputRole::logits, v2::kFp32, {1, 2, 2}, false},
                      {"label_ids", OutputRole::label_ids, v2::kInt64, {1, 2}, false}};
  InferReplyBody reply = write_infer_response(response);
  EXPECT_FALSE(reply.header_length);
  const json document = json::parse(reply.body);
  EXPECT_EQ(document["model_name"], "punct");
  EXPECT_EQ(document["model_version"], "3");
  EXPECT_EQ(document["id"], "x\"y");
  EXPECT_EQ(document["outputs"][0]["datatype"], "FP32");
  EXPECT_EQ(document["outputs"][0]["shape"], json::parse("[1, 2, 2]"));
  EXPECT_EQ(document["outputs"][0]["data"], json::parse("[0.5, -1.0, 2.25, 3.0]"));
  EXPECT_EQ(document["outputs"][1]["data"], json::parse("[0, 1]"));

  response.outputs[1].binary = true;
  reply = write_infer_response(response);
  ASSERT_TRUE(reply.header_length);
  const json header = json::parse(reply.body.substr(0, *reply.header_length));
  EXPECT_EQ(header["outputs"][1]["parameters"]["binary_data_size"], 16);
  EXPECT_FALSE(header["outputs"][1].contains("data"));
  EXPECT_EQ(reply.body.substr(*reply.header_length), little_endian<int64_t>({0, 1}));
}

TEST(RestV2Routes, ParsesTheProtocolsPaths) {
  EXPECT_EQ(parse_route("/v2").kind, RouteKind::v2_server_metadata);
  EXPECT_EQ(parse_route("/v2/health/live").kind, RouteKind::v2_live);
  EXPECT_EQ(parse_route("/v2/health/ready").kind, RouteKind::v2_ready);
  Route route = parse_route("/v2/models/punct");
  EXPECT_EQ(route.kind, RouteKind::v2_model_metadata);
  EXPECT_EQ(route.model, "punct");
  route = parse_route("/v2/models/punct/versions/12/infer");
  EXPECT_EQ(route.kind, RouteKind::v2_infer);
  EXPECT_EQ(route.version, 12);
  EXPECT_EQ(route_method(route.kind), "POST");
  EXPECT_EQ(parse_route("/v2/models/punct/ready").kind, RouteKind::v2_model_ready);
  EXPECT_TRUE(parse_route("/v2/models/punct/versions/99999999999999999999/infer").version_too_large);
  for (const char* path : {"/v2/models/", "/v2/models/punct/versions/x/infer", "/v2/models/punct/predict",
                           "/v2/health", "/v2/models/punct/infer/more"})
    EXPECT_EQ(parse_route(path).kind, RouteKind::unknown) << path;
}

}  // namespace
}  // namespace halfserve::rest
