// The REST front end over real sockets: TF Serving's routes (status, metadata, predict in both forms, versions and
// labels in the path), :punctuate, every error status, metrics, health, the access log, hundreds of concurrent
// keep-alive clients, and a prompt stop.
#include "halfserve/serve/rest_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "halfserve/format/bert_tensors.h"
#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/serve/predict_json.h"
#include "halfserve/text/punctuator.h"
#include "serve/rest_routes.h"
#include "test_support.h"

namespace halfserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::Contains;

constexpr uint64_t kVersion1Seed = 11, kVersion2Seed = 12;
constexpr size_t kMaxBodyBytes = 2 << 20;

// The tiny model over the generated 21128-token vocabulary (CJK ideographs included), so Chinese text tokenizes.
FrozenModel cjk_model(uint64_t seed) { return testing::tiny_model(seed, 21128, 1); }

// A model whose tokenizer has no vocabulary: it can predict on ids but cannot punctuate text.
FrozenModel model_without_vocabulary() {
  FrozenModel model = testing::tiny_model(21, 300, 1);
  model.metadata.tokenizer.vocab.clear();
  return model;
}

// An encoder without a classification head.
FrozenModel encoder_only() {
  const FrozenModel source = cjk_model(31);
  FrozenModel model;
  model.metadata = source.metadata;
  model.metadata.labels.clear();
  model.metadata.signatures = {Signature::default_for(false)};
  for (const auto& name : source.tensors.names())
    if (name != bert_names::kClassifierWeight && name != bert_names::kClassifierBias)
      model.tensors.add_view(name, source.tensors.at(name));
  model.tensors.keep_alive(std::make_shared<TensorStore>(source.tensors));
  return model;
}

void write_version(const fs::path& base, int64_t version, const FrozenModel& model) {
  fs::create_directories(base / std::to_string(version));
  save_frozen_model(model, (base / std::to_string(version) / "model.safetensors").string());
}

// Sends raw bytes and returns everything the server answers before it closes or goes quiet.
// `text` in gzip's wrapper, as a client with Content-Encoding: gzip sends it.
std::string gzip(const std::string& text) {
  z_stream stream{};
  deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&stream, text.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  stream.avail_in = static_cast<uInt>(text.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

// A connected TCP socket to the server, or -1.
int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  ::close(fd);
  return -1;
}

size_t thread_count() {
  size_t threads = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/task")) ++threads;
  return threads;
}

std::string raw_exchange(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return "";
  }
  timeval timeout{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  // (No half-close: cpp-httplib takes a socket with a pending end of stream for dead and would not answer.)
  std::string reply;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) {
    reply.append(buffer, static_cast<size_t>(n));
    timeval rest_of_reply{0, 200000};  // the connection may stay open: stop once the reply has arrived
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rest_of_reply, sizeof rest_of_reply);
  }
  ::close(fd);
  return reply;
}

class RestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_version(dir_ / "tiny", 1, cjk_model(kVersion1Seed));
    write_version(dir_ / "tiny", 2, cjk_model(kVersion2Seed));
    write_version(dir_ / "bare", 1, model_without_vocabulary());
    write_version(dir_ / "encoder", 1, encoder_only());
    VersionPolicy all_versions;
    all_versions.kind = VersionPolicy::Kind::all;
    ModelManagerOptions options;
    options.poll_seconds = 0;
    options.metrics = &metrics_;
    models_ = std::make_unique<ModelManager>(
        std::vector<ServedModelConfig>{{"tiny", (dir_ / "tiny").string(), all_versions, {{"stable", 1}, {"canary", 2}}},
                                       {"bare", (dir_ / "bare").string(), {}, {}},
                                       {"encoder", (dir_ / "encoder").string(), {}, {}}},
        options);
    models_->start();
    ASSERT_TRUE(models_->ready());
    server_ = start_server(*models_);
  }

  void TearDown() override {
    if (server_) server_->stop();
    if (models_) models_->stop();
  }

  std::unique_ptr<RestServer> start_server(ModelManager& models, size_t max_body_bytes = kMaxBodyBytes) {
    RestOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.max_body_bytes = max_body_bytes;
    options.access_log = [this](const std::string& line) {
      std::lock_guard lock(log_mutex_);
      access_log_.push_back(line);
    };
    auto server = std::make_unique<RestServer>(models, metrics_, options);
    server->start();
    EXPECT_GT(server->port(), 0);
    return server;
  }

  httplib::Client client() const {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_read_timeout(30, 0);
    return client;
  }

  // The reply's status and JSON body (null when it is not JSON).
  std::pair<int, json> get(const std::string& path) {
    auto result = client().Get(path);
    if (!result) return {0, nullptr};
    return {result->status, json::parse(result->body, nullptr, false)};
  }
  std::pair<int, json> post(const std::string& path, const std::string& body) {
    auto result = client().Post(path, body, "application/json");
    if (!result) return {0, nullptr};
    return {result->status, json::parse(result->body, nullptr, false)};
  }

  // Expects an error reply: the status and {"error": "..."} containing `fragment`.
  void expect_error(const std::pair<int, json>& reply, int status, const std::string& fragment) {
    EXPECT_EQ(reply.first, status) << reply.second.dump();
    ASSERT_TRUE(reply.second.is_object()) << reply.second.dump();
    ASSERT_TRUE(reply.second.contains("error")) << reply.second.dump();
    EXPECT_TRUE(Contains(reply.second["error"].get<std::string>(), fragment));
  }

  // What `halfserve predict` answers for this body on the given model: the server must answer exactly the same.
  static std::string expected_predict(const FrozenModel& frozen, const std::string& body) {
    const auto model = BertModel::from_model(frozen, {});
    const PredictRequest request = parse_predict_request(body, model->metadata());
    const auto selected = select_outputs(*request.signature, {}, model->metadata().has_head());
    Workspace workspace;
    const OutputBatch outputs = model->run(request.inputs, output_selection(selected), workspace);
    return format_predict_response(request, outputs, selected, static_cast<int64_t>(model->metadata().labels.size()),
                                   model->config().hidden_size);
  }

  std::vector<std::string> access_log() {
    std::lock_guard lock(log_mutex_);
    return access_log_;
  }

  testing::TempDir dir_;
  ServingMetrics metrics_;
  std::unique_ptr<ModelManager> models_;
  std::unique_ptr<RestServer> server_;
  std::mutex log_mutex_;
  std::vector<std::string> access_log_;
};

const std::string kColumnRequest =
    R"({"inputs": {"input_ids": [[101, 791, 1921, 102], [101, 1921, 102, 0]], "attention_mask": [[1, 1, 1, 1], [1, 1, 1, 0]]}})";
const std::string kRowRequest =
    R"({"signature_name": "serving_default", "instances": [{"input_ids": [101, 791, 1921, 102], "token_type_ids": [0, 0, 0, 0]}, {"input_ids": [101, 1921, 102, 0], "token_type_ids": [0, 0, 0, 0]}]})";

TEST(RestServerRoutes, ParsesTfServingPaths) {
  using rest::RouteKind;
  auto route = rest::parse_route("/v1/models/tiny");
  EXPECT_EQ(route.kind, RouteKind::model_status);
  EXPECT_EQ(route.model, "tiny");
  EXPECT_FALSE(route.version);
  route = rest::parse_route("/v1/models/tiny/versions/17/metadata");
  EXPECT_EQ(route.kind, RouteKind::model_metadata);
  EXPECT_EQ(route.version, 17);
  route = rest::parse_route("/v1/models/tiny/labels/stable:predict");
  EXPECT_EQ(route.kind, RouteKind::model_verb);
  EXPECT_EQ(route.label, "stable");
  EXPECT_EQ(route.verb, "predict");
  route = rest::parse_route("/v1/models/tiny:punctuate");
  EXPECT_EQ(route.kind, RouteKind::model_verb);
  EXPECT_EQ(route.verb, "punctuate");
  EXPECT_TRUE(rest::parse_route("/v1/models/tiny/versions/99999999999999999999").version_too_large);
  EXPECT_EQ(rest::parse_route("/healthz").kind, RouteKind::liveness);
  EXPECT_EQ(rest::parse_route("/readyz").kind, RouteKind::readiness);
  EXPECT_EQ(rest::parse_route("/monitoring/prometheus/metrics").kind, RouteKind::metrics);
  // halfserve's own: the web page's files, the model list, the WebSocket stream.
  EXPECT_EQ(rest::parse_route("/").kind, RouteKind::web_file);
  EXPECT_EQ(rest::parse_route("/app.js").kind, RouteKind::web_file);
  EXPECT_EQ(rest::parse_route("/v1/models").kind, RouteKind::model_list);
  route = rest::parse_route("/v1/models/tiny/labels/stable:stream");
  EXPECT_EQ(route.kind, RouteKind::model_stream);
  EXPECT_EQ(route.label, "stable");
  EXPECT_EQ(rest::route_method(RouteKind::model_stream), "GET");
  for (const char* bad : {"/v1/models/", "/v1/models/tiny/", "/index", "/a/b.js", "/.js", "/a.b.c",
                          "/v1/models/tiny/versions/x", "/v1/models/tiny/versions/", "/v1/models/tiny/labels/", "/v1/models/tiny:", "/v1/models/tiny:a:b",
                          "/v1/models/tiny/versions/1/labels/x", "/v1/models/tiny/metadata/x", "/v3/models/tiny"})
    EXPECT_EQ(rest::parse_route(bad).kind, RouteKind::unknown) << bad;
}

TEST_F(RestServerTest, ModelStatusForTheModelItsVersionsAndLabels) {
  auto [status, body] = get("/v1/models/tiny");
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_EQ(body["model_version_status"].size(), 2u);
  EXPECT_EQ(body["model_version_status"][0],
            json::parse(R"({"version":"2","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}})"));
  EXPECT_EQ(body["model_version_status"][1]["version"], "1");

  std::tie(status, body) = get("/v1/models/tiny/versions/1");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(body["model_version_status"].size(), 1u);
  EXPECT_EQ(body["model_version_status"][0]["version"], "1");
  std::tie(status, body) = get("/v1/models/tiny/labels/canary");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body["model_version_status"][0]["version"], "2");

  expect_error(get("/v1/models/tiny/versions/9"), 404, "version 9");
  expect_error(get("/v1/models/tiny/labels/nightly"), 404, "nightly");
  expect_error(get("/v1/models/nope"), 404, "nope");
  expect_error(get("/v1/models/tiny/versions/99999999999999999999"), 400, "64-bit");
  auto head = client().Head("/v1/models/tiny");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
}

TEST_F(RestServerTest, MetadataLooksLikeTfServings) {
  auto [status, body] = get("/v1/models/tiny/metadata");
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["model_spec"], json::parse(R"({"name":"tiny","signature_name":"","version":"2"})"));
  const json& signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"];
  EXPECT_EQ(signature["method_name"], "tensorflow/serving/predict");
  EXPECT_EQ(signature["inputs"]["input_ids"],
            json::parse(R"({"dtype":"DT_INT32","tensor_shape":{"dim":[{"size":"-1","name":""},{"size":"-1","name":""}],
                            "unknown_rank":false},"name":"input_ids:0"})"));
  EXPECT_TRUE(signature["inputs"].contains("attention_mask"));
  EXPECT_TRUE(signature["inputs"].contains("token_type_ids"));
  EXPECT_EQ(signature["outputs"]["logits"]["dtype"], "DT_FLOAT");
  EXPECT_EQ(signature["outputs"]["logits"]["tensor_shape"]["dim"][2]["size"], "6");
  EXPECT_EQ(signature["outputs"]["label_ids"]["dtype"], "DT_INT64");
  EXPECT_EQ(signature["outputs"]["label_ids"]["tensor_shape"]["dim"].size(), 2u);

  std::tie(status, body) = get("/v1/models/tiny/versions/1/metadata");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body["model_spec"]["version"], "1");
  std::tie(status, body) = get("/v1/models/tiny/labels/stable/metadata");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body["model_spec"]["version"], "1");
  std::tie(status, body) = get("/v1/models/encoder/metadata");
  ASSERT_EQ(status, 200);
  const json& hidden = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]["last_hidden_state"];
  EXPECT_EQ(hidden["tensor_shape"]["dim"][2]["size"], "32");
  expect_error(get("/v1/models/tiny/versions/3/metadata"), 404, "tiny");
}

TEST_F(RestServerTest, PredictAnswersExactlyWhatHalfservePredictDoes) {
  for (const std::string& request : {kColumnRequest, kRowRequest}) {
    SCOPED_TRACE(request);
    auto result = client().Post("/v1/models/tiny:predict", request, "application/json");
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 200) << result->body;
    EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
    EXPECT_EQ(result->body, expected_predict(cjk_model(kVersion2Seed), request));

    for (const char* version_path : {"/v1/models/tiny/versions/1:predict", "/v1/models/tiny/labels/stable:predict"}) {
      result = client().Post(version_path, request, "application/json");
      ASSERT_TRUE(result);
      EXPECT_EQ(result->status, 200) << result->body;
      EXPECT_EQ(result->body, expected_predict(cjk_model(kVersion1Seed), request)) << version_path;
    }
  }
  const json row = post("/v1/models/tiny:predict", kRowRequest).second;
  ASSERT_EQ(row["predictions"].size(), 2u);
  EXPECT_EQ(row["predictions"][0]["label_ids"].size(), 4u);
  const json column = post("/v1/models/tiny:predict", kColumnRequest).second;
  EXPECT_EQ(column["outputs"]["logits"][0][0].size(), 6u);
  // A model without a vocabulary still predicts on ids; an encoder answers its hidden states.
  EXPECT_EQ(post("/v1/models/bare:predict", R"({"inputs": [[1, 2, 3]]})").first, 200);
  const json hidden = post("/v1/models/encoder:predict", R"({"instances": [[101, 791, 102]]})").second;
  EXPECT_EQ(hidden["predictions"][0].size(), 3u);
  EXPECT_EQ(hidden["predictions"][0][0].size(), 32u);
}

// The v2 protocol's infer for kColumnRequest's inputs, JSON tensors both ways.
const std::string kV2InferRequest = R"({"id": "r1", "inputs": [
    {"name": "input_ids", "shape": [2, 4], "datatype": "INT32", "data": [[101, 791, 1921, 102], [101, 1921, 102, 0]]},
    {"name": "attention_mask", "shape": [2, 4], "datatype": "INT64", "data": [1, 1, 1, 1, 1, 1, 1, 0]}]})";

// Every float of a nested JSON array, in order.
std::vector<float> flat_floats(const json& values) {
  std::vector<float> out;
  if (!values.is_array()) return {values.get<float>()};
  for (const json& value : values)
    for (const float f : flat_floats(value)) out.push_back(f);
  return out;
}

TEST_F(RestServerTest, V2InferAnswersWhatPredictAnswers) {
  const json predict = post("/v1/models/tiny:predict", kColumnRequest).second;
  const auto [status, infer] = post("/v2/models/tiny/infer", kV2InferRequest);
  ASSERT_EQ(status, 200) << infer.dump();
  EXPECT_EQ(infer["model_name"], "tiny");
  EXPECT_EQ(infer["model_version"], "2");
  EXPECT_EQ(infer["id"], "r1");
  ASSERT_EQ(infer["outputs"].size(), 2u);
  EXPECT_EQ(infer["outputs"][0]["name"], "logits");
  EXPECT_EQ(infer["outputs"][0]["shape"], json::parse("[2, 4, 6]"));
  EXPECT_EQ(flat_floats(infer["outputs"][0]["data"]), flat_floats(predict["outputs"]["logits"]));
  EXPECT_EQ(infer["outputs"][1]["datatype"], "INT64");
  EXPECT_EQ(flat_floats(infer["outputs"][1]["data"]), flat_floats(predict["outputs"]["label_ids"]));

  // A version in the path; binary tensors in and out.
  const json version1 = post("/v1/models/tiny/versions/1:predict", kColumnRequest).second;
  const std::string header = R"({"inputs": [{"name": "input_ids", "shape": [2, 4], "datatype": "INT32",
      "parameters": {"binary_data_size": 32}}, {"name": "attention_mask", "shape": [2, 4], "datatype": "INT32",
      "data": [1, 1, 1, 1, 1, 1, 1, 0]}], "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]})";
  const std::vector<int32_t> ids = {101, 791, 1921, 102, 101, 1921, 102, 0};
  std::string body = header;
  body.append(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
  httplib::Headers headers = {{"Inference-Header-Content-Length", std::to_string(header.size())}};
  auto result = client().Post("/v2/models/tiny/versions/1/infer", headers, body, "application/octet-stream");
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/octet-stream");
  const size_t json_size = std::stoul(result->get_header_value("Inference-Header-Content-Length"));
  const json reply = json::parse(result->body.substr(0, json_size));
  EXPECT_EQ(reply["model_version"], "1");
  ASSERT_EQ(reply["outputs"].size(), 1u);
  EXPECT_EQ(reply["outputs"][0]["parameters"]["binary_data_size"], 2 * 4 * 6 * 4);
  std::vector<float> logits((result->body.size() - json_size) / sizeof(float));
  std::memcpy(logits.data(), result->body.data() + json_size, logits.size() * sizeof(float));
  EXPECT_EQ(logits, flat_floats(version1["outputs"]["logits"]));
}

TEST_F(RestServerTest, V2HealthMetadataAndErrors) {
  const auto [metadata_status, server] = get("/v2");
  EXPECT_EQ(metadata_status, 200);
  EXPECT_EQ(server["name"], "halfserve");
  EXPECT_EQ(server["extensions"], json::parse(R"(["binary_tensor_data"])"));
  EXPECT_EQ(client().Get("/v2/health/live")->status, 200);
  EXPECT_EQ(client().Get("/v2/health/ready")->status, 200);
  EXPECT_EQ(client().Get("/v2/models/tiny/ready")->status, 200);
  EXPECT_EQ(client().Get("/v2/models/tiny/versions/1/ready")->status, 200);
  EXPECT_EQ(client().Get("/v2/models/tiny/versions/7/ready")->status, 400);
  expect_error(get("/v2/models/nope/ready"), 404, "nope");

  const auto [status, model] = get("/v2/models/tiny");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(model["name"], "tiny");
  EXPECT_EQ(model["versions"], json::parse(R"(["2", "1"])"));  // newest first, as the model status lists them
  EXPECT_EQ(model["platform"], "halfserve");
  EXPECT_EQ(model["inputs"][0], json::parse(R"({"name": "input_ids", "datatype": "INT32", "shape": [-1, -1]})"));
  EXPECT_EQ(model["outputs"][0], json::parse(R"({"name": "logits", "datatype": "FP32", "shape": [-1, -1, 6]})"));
  expect_error(get("/v2/models/nope"), 404, "nope");

  expect_error(post("/v2/models/nope/infer", kV2InferRequest), 404, "nope");
  expect_error(post("/v2/models/tiny/versions/9/infer", kV2InferRequest), 404, "9");
  expect_error(post("/v2/models/tiny/infer", R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT32",
      "data": [101, 50000]}]})"), 400, "50000");
  expect_error(post("/v2/models/tiny/infer", R"({"inputs": [{"name": "segment_mask", "shape": [1, 2],
      "datatype": "INT32", "data": [1, 1]}]})"), 400, "segment_mask");
  expect_error(post("/v2/models/tiny/infer", R"({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT32",
      "data": [101, 102]}, {"name": "input_ids", "shape": [1, 2], "datatype": "INT32", "data": [101, 102]}]})"), 400,
               "twice");
  expect_error(post("/v2/models/tiny/infer", "{"), 400, "malformed JSON");
  auto get_infer = client().Get("/v2/models/tiny/infer");
  ASSERT_TRUE(get_infer);
  EXPECT_EQ(get_infer->status, 405);
  EXPECT_TRUE(Contains(metrics_.prometheus_text(), "API=\"infer\",entrypoint=\"REST\""));
}

TEST_F(RestServerTest, PunctuateMatchesThePunctuator) {
  const std::vector<std::string> texts = {"今天天气很好我们去公园玩吧", "你好", "", "hello world 今天"};
  Punctuator local(BertModel::from_model(cjk_model(kVersion2Seed), {}), {});
  const std::vector<std::string> expected = local.punctuate(texts);

  auto [status, body] = post("/v1/models/tiny:punctuate", json({{"text", texts[0]}}).dump());
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body, json({{"text", expected[0]}}));
  std::tie(status, body) = post("/v1/models/tiny:punctuate", json({{"texts", texts}}).dump());
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body, json({{"texts", expected}}));

  Punctuator version1(BertModel::from_model(cjk_model(kVersion1Seed), {}), {8, 3, 32, true});
  std::tie(status, body) = post("/v1/models/tiny/versions/1:punctuate",
                                json({{"texts", texts}, {"window", 8}, {"stride", 3}, {"keep_existing", true}}).dump());
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["texts"], json(version1.punctuate(texts)));
}

TEST_F(RestServerTest, PunctuateTokensCarryLabelsProbabilitiesAndInputOffsets) {
  const std::string text = "今天，天气很好。我们去公园玩吧？hello world";
  const auto model = BertModel::from_model(cjk_model(kVersion2Seed), {});
  for (const int64_t window : {0, 6}) {
    SCOPED_TRACE(window);
    const int64_t stride = window == 0 ? 16 : 2;  // at least a quarter of the window's content
    const json request = {{"text", text}, {"labels", true}, {"probabilities", true}, {"window", window}, {"stride", stride}};
    auto [status, body] = post("/v1/models/tiny:punctuate", request.dump());
    ASSERT_EQ(status, 200) << body.dump();
    const json& tokens = body["tokens"];
    Punctuator local(model, {window, stride, 32, false});
    const TextPrediction prediction = local.predict({text})[0];
    ASSERT_EQ(tokens.size(), prediction.tokens.size());
    EXPECT_EQ(body["text"], local.render(prediction));
    for (size_t i = 0; i < tokens.size(); ++i) {
      const json& token = tokens[i];
      const auto begin = token["begin"].get<size_t>(), end = token["end"].get<size_t>();
      const std::string piece = prediction.tokens[i].text;
      EXPECT_EQ(token["token"], piece);
      // Offsets point into the text as sent, marks included.
      EXPECT_EQ(text.substr(begin, end - begin), piece.rfind("##", 0) == 0 ? piece.substr(2) : piece) << i;
      const Label& label = model->metadata().labels[static_cast<size_t>(prediction.token_labels[i])];
      EXPECT_EQ(token["label"], label.name);
      EXPECT_EQ(token["mark"], label.mark);
      const double probability = token["probability"].get<double>();
      EXPECT_GE(probability, 1.0 / 6.0 - 1e-6);  // the most likely of 6 labels
      EXPECT_LE(probability, 1.0);
    }
  }

  // One window: each probability is exactly the softmax the model gives the token's label.
  auto [status, body] = post("/v1/models/tiny:punctuate", json({{"text", "你好世界"}, {"probabilities", true}}).dump());
  ASSERT_EQ(status, 200) << body.dump();
  const BertTokenizer tokenizer(model->metadata().tokenizer);
  const auto pieces = tokenizer.tokenize("你好世界");
  ASSERT_EQ(pieces.size(), 4u);
  InputBatch in;
  in.batch = 1;
  in.length = 6;
  in.input_ids = {tokenizer.cls_id()};
  for (const Token& piece : pieces) in.input_ids.push_back(piece.id);
  in.input_ids.push_back(tokenizer.sep_id());
  Workspace workspace;
  const OutputBatch out = model->run(in, {false, true, false, true}, workspace);
  for (size_t i = 0; i < 4; ++i) {
    const auto label = static_cast<size_t>(out.label_ids[i + 1]);
    // Written in shortest round-trip form: read back as a float, it is the model's float exactly.
    EXPECT_EQ(static_cast<float>(body["tokens"][i]["probability"].get<double>()), out.probabilities[(i + 1) * 6 + label]) << i;
  }

  // "texts" gives a token list per text.
  std::tie(status, body) = post("/v1/models/tiny:punctuate", R"({"texts": ["你好", ""], "labels": true})");
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_EQ(body["tokens"].size(), 2u);
  EXPECT_EQ(body["tokens"][0].size(), 2u);
  EXPECT_FALSE(body["tokens"][0][0].contains("probability"));
  EXPECT_EQ(body["tokens"][1], json::array());
}

TEST_F(RestServerTest, PunctuateRefusesWhatItCannotDo) {
  expect_error(post("/v1/models/bare:punctuate", R"({"text": "你好"})"), 400, "vocabulary");
  expect_error(post("/v1/models/encoder:punctuate", R"({"text": "你好"})"), 400, "head");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "你好", "texts": ["a"]})"), 400, "both");
  expect_error(post("/v1/models/tiny:punctuate", R"({"keep_existing": true})"), 400, "neither");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "你好", "windw": 8})"), 400, "windw");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "你好", "window": 2})"), 400, "window");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "你好", "window": -4})"), 400, "window");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "你好", "window": 1000})"), 400, "window");
  expect_error(post("/v1/models/tiny:punctuate", R"({"texts": ["a", 3]})"), 400, "texts[1]");
  expect_error(post("/v1/models/tiny:punctuate", "{\"text\": \"\xff\xfe\"}"), 400, "UTF-8");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "\udc00"})"), 400, "malformed");
  expect_error(post("/v1/models/tiny:punctuate", "[\"text\"]"), 400, "object");
  expect_error(post("/v1/models/nope:punctuate", R"({"text": "你好"})"), 404, "nope");
  expect_error(post("/v1/models/tiny:punctuate", json({{"texts", std::vector<std::string>(3, std::string(400000, 'a'))}}).dump()),
               400, "several requests");
  // Many empty texts cost no text bytes but a string each: reading stops at the 65537th.
  expect_error(post("/v1/models/tiny:punctuate", json({{"texts", std::vector<std::string>(70000, "")}}).dump()), 400,
               "lists 65537 texts, more than the 65536");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "a", "text": "b"})"), 400, "\"text\" is given twice");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "a", "stride": "8"})"), 400, "\"stride\" must be a non-negative integer");
  expect_error(post("/v1/models/tiny:punctuate", R"({"texts": ["a", ["b"]]})"), 400, "texts[1] is not a string");
  expect_error(post("/v1/models/tiny:punctuate", R"({"text": "a", "labels": 1})"), 400, "\"labels\" must be true or false");
  expect_error(post("/v1/models/tiny:punctuate", json({{"texts", std::vector<std::string>(65537, "")}}).dump()), 400,
               "lists 65537 texts, more than the 65536");
}

TEST_F(RestServerTest, EveryErrorHasItsStatusAndAJsonBody) {
  expect_error(post("/v1/models/tiny:predict", "{\"inputs\": [[1, 2"), 400, "malformed JSON");
  expect_error(post("/v1/models/tiny:predict", std::string(100, '[') + std::string(100, ']')), 400, "nested");
  expect_error(post("/v1/models/tiny:predict", R"({"inputs": [[1]], "instances": [[1]]})"), 400, "both");
  expect_error(post("/v1/models/tiny:predict", R"({"inputs": [[1, 99999]]})"), 400, "vocabulary");
  expect_error(post("/v1/models/tiny:predict", R"({"signature_name": "ac_forward", "inputs": [[1]]})"), 400, "ac_forward");
  expect_error(post("/v1/models/tiny:predict", ""), 400, "malformed");
  expect_error(post("/v1/models/nope:predict", kColumnRequest), 404, "nope");
  expect_error(post("/v1/models/tiny/versions/5:predict", kColumnRequest), 404, "5");
  expect_error(post("/v1/models/tiny:classify", R"({"examples": []})"), 501, "classify");
  expect_error(post("/v1/models/tiny:regress", R"({"examples": []})"), 501, "regress");
  expect_error(post("/v1/models/nope:classify", R"({"examples": []})"), 404, "nope");
  expect_error(post("/v1/models/tiny:explode", "{}"), 404, "no route");
  expect_error(get("/v3/models/tiny"), 404, "no route");
  expect_error(get("/" + std::string(7000, 'a')), 404, "no route");

  auto wrong_method = client().Get("/v1/models/tiny:predict");
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(wrong_method->get_header_value("Allow"), "POST");
  EXPECT_TRUE(Contains(json::parse(wrong_method->body)["error"], "POST"));
  expect_error(post("/v1/models/tiny", "{}"), 405, "GET");
  auto deleted = client().Delete("/v1/models/tiny");
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->status, 405);
  expect_error(post("/healthz", "{}"), 405, "GET");

  // Too large: by Content-Length and, without one, chunk by chunk.
  expect_error(post("/v1/models/tiny:predict", std::string(kMaxBodyBytes + 1, ' ')), 413, "limit");
  auto chunked = client().Post(
      "/v1/models/tiny:predict",
      [](size_t offset, httplib::DataSink& sink) {
        const std::string chunk(64 << 10, ' ');
        if (offset < 2 * kMaxBodyBytes) sink.write(chunk.data(), chunk.size());
        else sink.done();
        return true;
      },
      "application/json");
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->status, 413) << chunked->body;
  // The server is still fine afterwards.
  EXPECT_EQ(post("/v1/models/tiny:predict", kColumnRequest).first, 200);
}

TEST_F(RestServerTest, MalformedHttpNeverHurtsTheServer) {
  const int port = server_->port();
  // Not HTTP at all: libmicrohttpd closes the connection without a reply (a 400 would do as well).
  const std::string garbage = raw_exchange(port, "garbage\r\n\r\n");
  EXPECT_TRUE(garbage.empty() || Contains(garbage, "400")) << garbage;
  EXPECT_TRUE(Contains(raw_exchange(port, "GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\nBroken header\r\n\r\n"), "HTTP/1.1"));
  EXPECT_TRUE(Contains(raw_exchange(port, "POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
                       "HTTP/1.1 4"));
  EXPECT_TRUE(Contains(raw_exchange(port, "GET /" + std::string(20000, 'x') + " HTTP/1.1\r\nHost: x\r\n\r\n"), "414"));
  // A POST without Content-Length has an empty body: answered at once, not after a timeout.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(Contains(raw_exchange(port, "POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                       "HTTP/1.1 400"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  // Multipart bodies are read to their end and refused.
  httplib::MultipartFormDataItems items = {{"inputs", "[[1]]", "", "application/json"}};
  auto multipart = client().Post("/v1/models/tiny:predict", items);
  ASSERT_TRUE(multipart);
  EXPECT_EQ(multipart->status, 415);
  EXPECT_EQ(post("/v1/models/tiny:predict", kColumnRequest).first, 200);
}

TEST_F(RestServerTest, CompressedBodiesAreDecodedWithinTheLimit) {
  const auto plain = post("/v1/models/tiny:predict", kColumnRequest);
  ASSERT_EQ(plain.first, 200);
  auto post_encoded = [&](const std::string& encoding, const std::string& body) {
    auto result = client().Post("/v1/models/tiny:predict", httplib::Headers{{"Content-Encoding", encoding}}, body,
                                "application/json");
    EXPECT_TRUE(result);
    return result ? std::pair{result->status, json::parse(result->body, nullptr, false)} : std::pair{0, json()};
  };
  EXPECT_EQ(post_encoded("gzip", gzip(kColumnRequest)), plain);
  // A bomb: 256 MB of spaces in about 250 KB. Inflating stops at the limit instead of going on to the end.
  const auto bomb = post_encoded("gzip", gzip(std::string(256 << 20, ' ')));
  EXPECT_EQ(bomb.first, 413);
  EXPECT_TRUE(Contains(bomb.second.dump(), "once decompressed")) << bomb.second.dump();
  const auto corrupt = post_encoded("gzip", "this is not gzip");
  EXPECT_EQ(corrupt.first, 400);
  EXPECT_TRUE(Contains(corrupt.second.dump(), "corrupt")) << corrupt.second.dump();
  const auto brotli = post_encoded("br", kColumnRequest);
  EXPECT_EQ(brotli.first, 415);
  EXPECT_TRUE(Contains(brotli.second.dump(), "Content-Encoding 'br'")) << brotli.second.dump();
  EXPECT_EQ(post("/v1/models/tiny:predict", kColumnRequest), plain);
}

TEST_F(RestServerTest, IdleAndSlowConnectionsTakeNoThreadsAndStarveNoOne) {
  // cpp-httplib, before, gave each connection a thread: 1000 idle keep-alives or 2000 slowloris clients sending a
  // header line now and then left new clients unserved. Here they are descriptors on the event loop.
  const size_t threads_before = thread_count();
  std::vector<int> sockets;
  for (int i = 0; i < 400; ++i) sockets.push_back(connect_to(server_->port()));  // idle
  for (int i = 0; i < 400; ++i) {  // slowloris: a request that never ends its headers
    sockets.push_back(connect_to(server_->port()));
    const std::string start = "POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    ::send(sockets.back(), start.data(), start.size(), MSG_NOSIGNAL);
  }
  EXPECT_EQ(std::count(sockets.begin(), sockets.end(), -1), 0);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(post("/v1/models/tiny:predict", kColumnRequest).first, 200);
  // Not a speed test: a liveness bound, with room for a loaded machine (before, no request got through in 60 s).
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_LT(thread_count(), threads_before + 20) << "connections took threads";
  for (const int fd : sockets)
    if (fd >= 0) ::close(fd);
}

TEST_F(RestServerTest, ConnectionsPastTheCapAreToldWhyWithA503) {
  RestOptions options;
  options.host = "127.0.0.1";
  options.max_connections = 3;
  RestServer capped(*models_, metrics_, options);
  capped.start();
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(connect_to(capped.port()));
  const std::string request = "POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(kColumnRequest.size()) + "\r\n\r\n" + kColumnRequest;
  const std::string refused = raw_exchange(capped.port(), request);
  EXPECT_TRUE(Contains(refused, "HTTP/1.1 503")) << refused;
  EXPECT_TRUE(Contains(refused, "Retry-After: 1")) << refused;
  EXPECT_TRUE(Contains(refused, "limit of 3 open connections")) << refused;
  // A held connection is served as usual, and once one closes a new client is too.
  ::send(held[0], request.data(), request.size(), MSG_NOSIGNAL);
  char buffer[64] = {};
  EXPECT_GT(::recv(held[0], buffer, sizeof buffer - 1, 0), 0);
  EXPECT_TRUE(Contains(buffer, "HTTP/1.1 200")) << buffer;
  ::close(held[1]);
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {  // the server notices the close on its next poll
    served = Contains(raw_exchange(capped.port(), request), "HTTP/1.1 200");
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(served);
  for (const int fd : held)
    if (fd >= 0 && fd != held[1]) ::close(fd);
  capped.stop();
}

TEST_F(RestServerTest, MetricsCountEveryModelRequest) {
  post("/v1/models/tiny:predict", kColumnRequest);
  post("/v1/models/tiny:predict", "not json");
  post("/v1/models/tiny:punctuate", R"({"text": "你好"})");
  get("/v1/models/tiny");
  get("/v1/models/tiny/metadata");
  post("/v1/models/unknown-model-name:predict", kColumnRequest);
  auto result = client().Get("/monitoring/prometheus/metrics");
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = result->body;
  EXPECT_TRUE(Contains(text, ":tensorflow:serving:request_count{model_name=\"tiny\",status=\"OK\"} 4"));
  EXPECT_TRUE(Contains(text, ":tensorflow:serving:request_count{model_name=\"tiny\",status=\"INVALID_ARGUMENT\"} 1"));
  EXPECT_TRUE(Contains(text, ":tensorflow:serving:request_count{model_name=\"\",status=\"NOT_FOUND\"} 1"));
  EXPECT_FALSE(Contains(text, "unknown-model-name"));
  for (const char* api : {"predict", "punctuate", "get_model_status", "get_model_metadata"})
    EXPECT_TRUE(Contains(text, std::string(":tensorflow:serving:request_latency_count{model_name=\"tiny\",API=\"") + api +
                                   "\",entrypoint=\"REST\"}"));
  EXPECT_TRUE(Contains(text, ":halfserve:model_versions_available{model_name=\"tiny\"} 2"));
}

TEST_F(RestServerTest, LivenessReadinessAndDraining) {
  auto [status, body] = get("/healthz");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, json({{"alive", true}}));
  std::tie(status, body) = get("/readyz");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, json({{"ready", true}}));
  server_->set_draining(true);
  std::tie(status, body) = get("/readyz");
  EXPECT_EQ(status, 503);
  EXPECT_EQ(body["ready"], false);
  EXPECT_TRUE(Contains(body["reason"], "draining"));
  EXPECT_EQ(get("/healthz").first, 200);
  EXPECT_EQ(post("/v1/models/tiny:predict", kColumnRequest).first, 200);  // draining still serves
  server_->set_draining(false);
  EXPECT_EQ(get("/readyz").first, 200);

  // A manager that has not loaded its model is not ready, and says which model it waits for.
  ModelManagerOptions options;
  options.poll_seconds = 0;
  ModelManager loading({{"later", (dir_ / "later").string(), {}, {}}}, options);
  auto server = start_server(loading);
  httplib::Client other("127.0.0.1", server->port());
  auto result = other.Get("/readyz");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 503);
  EXPECT_TRUE(Contains(json::parse(result->body)["reason"], "later"));
  result = other.Get("/healthz");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  server->stop();
}

TEST_F(RestServerTest, AccessLogHasOneJsonLinePerRequest) {
  post("/v1/models/tiny/labels/stable:predict", kColumnRequest);
  get("/v1/models/nope");
  get("/healthz");
  server_->stop();  // the logger runs after each response is written: stop() waits for it
  const auto lines = access_log();
  ASSERT_EQ(lines.size(), 3u);
  // A line is written after its response, so a quick next request can log first: find each line by its path.
  const auto line_for = [&](const std::string& path) {
    for (const auto& line : lines)
      if (json::parse(line)["path"] == path) return json::parse(line);
    ADD_FAILURE() << "no access log line for " << path;
    return json::object();
  };
  const json predict = line_for("/v1/models/tiny/labels/stable:predict");
  EXPECT_EQ(predict["method"], "POST");
  EXPECT_EQ(predict["path"], "/v1/models/tiny/labels/stable:predict");
  EXPECT_EQ(predict["status"], 200);
  EXPECT_EQ(predict["bytes_in"], kColumnRequest.size());
  EXPECT_GT(predict["bytes_out"].get<size_t>(), 100u);
  EXPECT_GT(predict["latency_us"].get<int64_t>(), 0);
  EXPECT_EQ(predict["model"], "tiny");
  EXPECT_EQ(predict["version"], 1);
  EXPECT_EQ(predict["remote"], "127.0.0.1");
  EXPECT_TRUE(Contains(predict["time"], "T"));
  const json missing = line_for("/v1/models/nope");
  EXPECT_EQ(missing["status"], 404);
  EXPECT_EQ(missing["model"], "nope");
  EXPECT_TRUE(missing["version"].is_null());
  EXPECT_TRUE(line_for("/healthz")["model"].is_null());
}

TEST_F(RestServerTest, ServesThreeHundredKeepAliveClientsAtOnce) {
  constexpr int kClients = 300;
  std::mutex mutex;
  std::condition_variable all_connected;
  int connected = 0;
  std::atomic<int> succeeded = 0, failed = 0;
  const std::string expected = expected_predict(cjk_model(kVersion2Seed), kColumnRequest);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", server_->port());
      client.set_keep_alive(true);
      client.set_connection_timeout(30, 0);
      client.set_read_timeout(60, 0);
      auto first = client.Get("/v1/models/tiny");
      (first && first->status == 200 ? succeeded : failed)++;
      // Every client holds its connection open until all have one: a server with fewer connection threads than
      // clients would never get here.
      {
        std::unique_lock lock(mutex);
        ++connected;
        all_connected.notify_all();
        if (!all_connected.wait_for(lock, std::chrono::seconds(60), [&] { return connected == kClients; })) {
          ++failed;
          return;
        }
      }
      for (int r = 0; r < 3; ++r) {
        auto result = (c + r) % 2 == 0 ? client.Post("/v1/models/tiny:predict", kColumnRequest, "application/json")
                                       : client.Post("/v1/models/tiny:punctuate", R"({"text": "你好世界"})", "application/json");
        const bool ok = result && result->status == 200 && ((c + r) % 2 != 0 || result->body == expected);
        (ok ? succeeded : failed)++;
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(succeeded.load(), kClients * 4);
}

TEST_F(RestServerTest, SequentialRequestsOnOneConnectionAreNotDelayed) {
  // Headers and body leave in separate writes: Nagle's algorithm against delayed ACKs would add ~40 ms to each
  // reply (and to each request: cpp-httplib's client writes separately too, hence its TCP_NODELAY here).
  httplib::Client keep_alive = client();
  keep_alive.set_keep_alive(true);
  keep_alive.set_tcp_nodelay(true);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    auto result = keep_alive.Post("/v1/models/tiny:predict", kColumnRequest, "application/json");
    ASSERT_TRUE(result);
    ASSERT_EQ(result->status, 200);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(RestServerTest, StopClosesIdleKeepAliveConnectionsAtOnce) {
  httplib::Client idle = client();
  idle.set_keep_alive(true);
  auto result = idle.Get("/healthz");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  const auto start = std::chrono::steady_clock::now();
  server_->stop();  // the keep-alive timeout is 30 s
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_FALSE(idle.Get("/healthz"));
}

TEST_F(RestServerTest, StopLetsRequestsInFlightFinish) {
  // A large batch keeps the model busy while stop() is called.
  json ids = json::array();
  for (int row = 0; row < 64; ++row) {
    json line = json::array();
    for (int t = 0; t < 64; ++t) line.push_back(100 + (row * 64 + t) % 20000);
    ids.push_back(line);
  }
  const std::string request = json({{"inputs", ids}}).dump();
  std::vector<std::thread> clients;
  std::atomic<int> succeeded = 0;
  std::atomic<int> started = 0;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", server_->port());
      ++started;
      for (int r = 0; r < 3; ++r) {
        auto result = client.Post("/v1/models/tiny:predict", request, "application/json");
        if (!result) return;  // refused once the server stopped: never half-answered
        if (result->status == 200 && json::parse(result->body)["outputs"]["logits"].size() == 64) ++succeeded;
      }
    });
  while (started < 4) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  server_->stop();
  for (auto& client : clients) client.join();
  EXPECT_GT(succeeded.load(), 0);
}

TEST_F(RestServerTest, RefusesToStartOnABusyPort) {
  RestOptions options;
  options.host = "127.0.0.1";
  options.port = server_->port();
  RestServer second(*models_, metrics_, options);
  try {
    second.start();
    FAIL() << "bound a port already in use";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), std::to_string(server_->port())));
  }
}

TEST_F(RestServerTest, FullQueueAnswersTooManyRequests) {
  write_version(dir_ / "queued", 1, testing::tiny_model(41, 21128, 2));
  ModelManagerOptions options;
  options.poll_seconds = 0;
  options.batching_enabled = true;
  options.batching.max_batch_size = 1;
  options.batching.max_enqueued_batches = 1;
  options.batching.num_batch_threads = 1;
  ModelManager queued({{"queued", (dir_ / "queued").string(), {}, {}}}, options);
  queued.start();
  auto server = start_server(queued);
  json ids = json::array();
  for (int t = 0; t < 64; ++t) ids.push_back(100 + t);
  const std::string request = json({{"inputs", json::array({ids})}}).dump();
  std::atomic<int> ok = 0, refused = 0, other = 0;
  std::vector<std::thread> clients;
  for (int c = 0; c < 48; ++c)
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", server->port());
      for (int r = 0; r < 4; ++r) {
        auto result = client.Post("/v1/models/queued:predict", request, "application/json");
        if (result && result->status == 200) ++ok;
        else if (result && result->status == 429 && Contains(json::parse(result->body)["error"], "")) ++refused;
        else ++other;
      }
    });
  for (auto& client : clients) client.join();
  server->stop();
  queued.stop();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(refused.load(), 0);
}

}  // namespace
}  // namespace halfserve
