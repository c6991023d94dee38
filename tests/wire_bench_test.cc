// The over-the-wire bench against a real in-process halfserve Server, over REST and gRPC: every request the client
// says it sent must appear in the server's own request count, failures must be counted rather than abort the run,
// and the report must hold the grid's rows and columns and the sweep's rows.
#include "halfserve/bench/wire_bench.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <regex>

#include "halfserve/serve/server.h"
#include "halfserve/util/error.h"
#include "test_support.h"

namespace halfserve {
namespace {

namespace fs = std::filesystem;
using testing::Contains;

constexpr int64_t kTinyVocabulary = 300;  // testing::tiny_model()'s default

// A port nothing listens on right now (the kernel's pick for port 0). Another process could take it before the
// server binds it; acceptable in tests.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t size = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

// How many requests for `model` the server counted with `status`; 0 before the first.
int64_t served_count(Server& server, const std::string& model, const std::string& status) {
  const std::regex line(":tensorflow:serving:request_count\\{model_name=\"" + model + "\",status=\"" + status +
                        "\"\\} (\\d+)");
  std::smatch match;
  const std::string text = server.metrics().prometheus_text();
  return std::regex_search(text, match, line) ? std::stoll(match[1].str()) : 0;
}

WireGridOptions short_grid() {
  WireGridOptions options;
  options.lengths = {8, 16};
  options.batches = {1, 4};
  options.seconds_per_cell = 0.5;
  options.max_id = kTinyVocabulary;
  return options;
}

ConcurrencyOptions short_sweep() {
  ConcurrencyOptions options;
  options.clients = {1, 4};
  options.seconds = 0.5;
  options.length = 16;
  options.max_id = kTinyVocabulary;
  return options;
}

int64_t total_requests(const std::vector<WireCell>& cells, const std::vector<ConcurrencyPoint>& points) {
  int64_t total = 0;
  for (const auto& cell : cells) total += cell.requests;
  for (const auto& point : points) total += point.requests;
  return total;
}

bool is_grpc(WireTarget::Protocol protocol) {
  return protocol == WireTarget::Protocol::grpc || protocol == WireTarget::Protocol::v2_grpc;
}
bool is_v2(WireTarget::Protocol protocol) {
  return protocol == WireTarget::Protocol::v2_grpc || protocol == WireTarget::Protocol::v2_rest;
}

// One server for the suite: loading and warming up the model is the slow part.
class WireBenchServer : public ::testing::TestWithParam<WireTarget::Protocol> {
 protected:
  static void SetUpTestSuite() {
    base_ = new testing::TempDir();
    fs::create_directories(*base_ / "1");
    FrozenModel model = testing::tiny_model();
    // A signature with its own names, as the seed's SavedModel has: the bench must be able to address it.
    Signature ac;
    ac.name = "ac_forward";
    ac.inputs = {{"input", InputRole::input_ids}, {"mask", InputRole::attention_mask}};
    ac.outputs = {{"punc_output", OutputRole::label_ids}};
    model.metadata.signatures.push_back(ac);
    save_frozen_model(model, (*base_ / "1" / "model.safetensors").string());
    ServerOptions options;
    options.models = {{"tiny", base_->path().string(), {}, {}}};
    options.manager.poll_seconds = 0;
    options.grpc_host = options.rest_host = "127.0.0.1";
    options.grpc_port = free_port();
    options.rest_port = free_port();
    options.readiness_grace = std::chrono::milliseconds(0);
    server_ = new Server(options);
    server_->start();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete base_;
    server_ = nullptr;
    base_ = nullptr;
  }

  static WireTarget target(const std::string& model = "tiny") {
    WireTarget target;
    target.protocol = GetParam();
    target.host = "127.0.0.1";
    target.port = is_grpc(GetParam()) ? server_->grpc_port() : server_->rest_port();
    target.model_name = model;
    target.timeout_seconds = 30;
    return target;
  }

  static testing::TempDir* base_;
  static Server* server_;
};

testing::TempDir* WireBenchServer::base_ = nullptr;
Server* WireBenchServer::server_ = nullptr;

TEST_P(WireBenchServer, GridAndSweepAreAllServedAndCounted) {
  ASSERT_GT(target().port, 0);
  const int64_t ok_before = served_count(*server_, "tiny", "OK");
  std::vector<std::string> progress;
  WireGridOptions grid_options = short_grid();
  grid_options.progress = [&](const std::string& line) { progress.push_back(line); };
  const std::vector<WireCell> cells = run_wire_grid(target(), grid_options);
  const std::vector<ConcurrencyPoint> points = run_concurrency_sweep(target(), short_sweep());

  ASSERT_EQ(cells.size(), 4u);
  EXPECT_EQ(progress.size(), 4u);
  for (const auto& cell : cells) {
    SCOPED_TRACE("len " + std::to_string(cell.length) + " batch " + std::to_string(cell.batch));
    EXPECT_EQ(cell.errors, 0) << cell.first_error;
    EXPECT_GE(cell.samples_ms.size(), 3u);
    EXPECT_EQ(cell.requests, static_cast<int64_t>(cell.samples_ms.size()) + 1);  // + the warm-up
    EXPECT_EQ(cell.warmup_requests, 1);
    EXPECT_GT(cell.median_ms, 0);
    EXPECT_GE(cell.p90_ms, cell.median_ms);
  }
  EXPECT_EQ(cells[0].length, 8);
  EXPECT_EQ(cells[0].batch, 1);
  EXPECT_EQ(cells[3].length, 16);
  EXPECT_EQ(cells[3].batch, 4);

  ASSERT_EQ(points.size(), 2u);
  for (const auto& point : points) {
    SCOPED_TRACE(std::to_string(point.clients) + " clients");
    EXPECT_EQ(point.errors, 0) << point.first_error;
    EXPECT_EQ(point.warmup_requests, point.clients);
    EXPECT_GT(point.requests, point.warmup_requests);
    EXPECT_GE(point.seconds, 0.5);
    EXPECT_LT(point.seconds, 30);
    EXPECT_NEAR(point.throughput, static_cast<double>(point.requests - point.warmup_requests) / point.seconds, 1e-6);
    EXPECT_GT(point.p50_ms, 0);
    EXPECT_LE(point.p50_ms, point.p90_ms);
    EXPECT_LE(point.p90_ms, point.p99_ms);
  }
  EXPECT_EQ(points[0].clients, 1);
  EXPECT_EQ(points[1].clients, 4);

  // The server saw exactly what the client sent, all answered OK.
  EXPECT_EQ(served_count(*server_, "tiny", "OK") - ok_before, total_requests(cells, points));

  const std::string report = format_wire_report(cells, points, target());
  const std::map<WireTarget::Protocol, std::string> names = {
      {WireTarget::Protocol::grpc, "gRPC Predict, grpc://127.0.0.1:"},
      {WireTarget::Protocol::rest, "REST :predict, http://127.0.0.1:"},
      {WireTarget::Protocol::v2_grpc, "v2 gRPC ModelInfer, v2+grpc://127.0.0.1:"},
      {WireTarget::Protocol::v2_rest, "v2 REST /infer, v2+http://127.0.0.1:"}};
  EXPECT_TRUE(Contains(report, names.at(GetParam()))) << report;
  EXPECT_TRUE(Contains(report, "model tiny"));
  EXPECT_TRUE(Contains(report, "| length \\ batch | 1 | 4 |\n|---|---|---|\n| len 8 | "));
  EXPECT_TRUE(Contains(report, "\n| len 16 | "));
  EXPECT_TRUE(Contains(report, "batch 1, length 16"));
  EXPECT_TRUE(Contains(report, "| clients | requests/s | p50 | p90 | p99 | requests | errors |"));
  EXPECT_TRUE(Contains(report, "\n| 1 | "));
  EXPECT_TRUE(Contains(report, "\n| 4 | "));
  EXPECT_EQ(report.find("failed"), std::string::npos) << report;
}

TEST_P(WireBenchServer, UnknownModelCountsErrorsWithTheServersCode) {
  const int64_t ok_before = served_count(*server_, "tiny", "OK");
  WireGridOptions grid_options = short_grid();
  grid_options.lengths = {8};
  grid_options.batches = {2};
  grid_options.seconds_per_cell = 0;
  const std::vector<WireCell> cells = run_wire_grid(target("missing"), grid_options);
  ConcurrencyOptions sweep_options = short_sweep();
  sweep_options.clients = {2};
  sweep_options.seconds = 0.2;
  const std::vector<ConcurrencyPoint> points = run_concurrency_sweep(target("missing"), sweep_options);

  ASSERT_EQ(cells.size(), 1u);
  EXPECT_TRUE(cells[0].samples_ms.empty());
  EXPECT_EQ(cells[0].requests, 4);  // warm-up + min_repetitions
  EXPECT_EQ(cells[0].errors, cells[0].requests);
  EXPECT_TRUE(Contains(cells[0].first_error, "NOT_FOUND"));
  EXPECT_TRUE(Contains(cells[0].first_error, "missing"));
  ASSERT_EQ(points.size(), 1u);
  EXPECT_GT(points[0].errors, 2);
  EXPECT_EQ(points[0].errors, points[0].requests);
  EXPECT_EQ(points[0].throughput, 0);
  EXPECT_TRUE(Contains(points[0].first_error, "NOT_FOUND"));
  EXPECT_EQ(served_count(*server_, "tiny", "OK"), ok_before);

  const std::string report = format_wire_report(cells, points, target("missing"));
  EXPECT_TRUE(Contains(report, "| len 8 | - |"));
  EXPECT_TRUE(Contains(report, "- len 8 batch 2: 4 of 4 requests failed; first: "));
  EXPECT_TRUE(Contains(report, "| 2 | 0.0 | - | - | - | "));
  EXPECT_TRUE(Contains(report, "- 2 clients: "));
}

// TF Serving's protocols address a signature by name; the v2 protocol has none and serves the default signature, so
// the other signature's input name is refused there.
TEST_P(WireBenchServer, ReachesANamedSignatureByItsInputName) {
  if (is_v2(GetParam())) {
    WireTarget other = target();
    other.input_name = "input";
    WireGridOptions grid_options = short_grid();
    grid_options.lengths = {8};
    grid_options.batches = {3};
    grid_options.seconds_per_cell = 0;
    const std::vector<WireCell> cells = run_wire_grid(other, grid_options);
    EXPECT_EQ(cells[0].errors, cells[0].requests);
    EXPECT_TRUE(Contains(cells[0].first_error, "INVALID_ARGUMENT"));
    EXPECT_TRUE(Contains(cells[0].first_error, "'input'"));
    return;
  }
  WireTarget named = target();
  named.signature_name = "ac_forward";
  named.input_name = "input";
  WireGridOptions grid_options = short_grid();
  grid_options.lengths = {8};
  grid_options.batches = {3};
  grid_options.seconds_per_cell = 0;
  const std::vector<WireCell> cells = run_wire_grid(named, grid_options);
  ASSERT_EQ(cells.size(), 1u);
  EXPECT_EQ(cells[0].errors, 0) << cells[0].first_error;
  EXPECT_EQ(cells[0].samples_ms.size(), 3u);

  // The default input name is not one of this signature's: the server's INVALID_ARGUMENT comes back.
  named.input_name = "input_ids";
  const std::vector<WireCell> wrong = run_wire_grid(named, grid_options);
  EXPECT_EQ(wrong[0].errors, wrong[0].requests);
  EXPECT_TRUE(Contains(wrong[0].first_error, "INVALID_ARGUMENT"));
  EXPECT_TRUE(Contains(wrong[0].first_error, "input_ids"));
}

TEST_P(WireBenchServer, NothingListeningCountsTransportErrors) {
  WireTarget closed = target();
  closed.port = free_port();
  WireGridOptions grid_options = short_grid();
  grid_options.lengths = {8};
  grid_options.batches = {1};
  grid_options.seconds_per_cell = 0;
  const std::vector<WireCell> cells = run_wire_grid(closed, grid_options);
  ASSERT_EQ(cells.size(), 1u);
  EXPECT_EQ(cells[0].errors, cells[0].requests);
  EXPECT_TRUE(Contains(cells[0].first_error,
                       is_grpc(GetParam()) ? "gRPC UNAVAILABLE" : "REST transport error"));
}

INSTANTIATE_TEST_SUITE_P(WireBenchProtocols, WireBenchServer,
                         ::testing::Values(WireTarget::Protocol::rest, WireTarget::Protocol::grpc,
                                           WireTarget::Protocol::v2_rest, WireTarget::Protocol::v2_grpc),
                         [](const auto& info) {
                           switch (info.param) {
                             case WireTarget::Protocol::grpc: return "grpc";
                             case WireTarget::Protocol::rest: return "rest";
                             case WireTarget::Protocol::v2_grpc: return "v2_grpc";
                             case WireTarget::Protocol::v2_rest: return "v2_rest";
                           }
                           return "unknown";
                         });

TEST(WireBenchTarget, ParsesGrpcAndHttpUrls) {
  WireTarget target = parse_wire_target("grpc://localhost:8500", "punct");
  EXPECT_EQ(target.protocol, WireTarget::Protocol::grpc);
  EXPECT_EQ(target.host, "localhost");
  EXPECT_EQ(target.port, 8500);
  EXPECT_EQ(target.model_name, "punct");
  EXPECT_EQ(target.signature_name, "serving_default");
  EXPECT_EQ(target.input_name, "input_ids");
  EXPECT_EQ(wire_target_url(target), "grpc://localhost:8500");

  target = parse_wire_target("http://10.0.0.7:9001/", "m");
  EXPECT_EQ(target.protocol, WireTarget::Protocol::rest);
  EXPECT_EQ(target.host, "10.0.0.7");
  EXPECT_EQ(target.port, 9001);
  EXPECT_EQ(wire_target_url(target), "http://10.0.0.7:9001");

  EXPECT_EQ(parse_wire_target("grpc://serving", "m").port, 8500);  // TF Serving's default ports
  EXPECT_EQ(parse_wire_target("http://serving", "m").port, 8501);
  target = parse_wire_target("grpc://[::1]:8600", "m");
  EXPECT_EQ(target.host, "::1");
  EXPECT_EQ(target.port, 8600);
  EXPECT_EQ(wire_target_url(target), "grpc://[::1]:8600");

  target = parse_wire_target("v2+http://serving/", "m");
  EXPECT_EQ(target.protocol, WireTarget::Protocol::v2_rest);
  EXPECT_EQ(target.port, 8501);
  EXPECT_EQ(wire_target_url(target), "v2+http://serving:8501");
  target = parse_wire_target("v2+grpc://serving", "m");
  EXPECT_EQ(target.protocol, WireTarget::Protocol::v2_grpc);
  EXPECT_EQ(target.port, 8500);
}

TEST(WireBenchTarget, RejectsMalformedUrls) {
  const auto expect_rejected = [](const std::string& url, const std::string& model, const std::string& fragment) {
    try {
      parse_wire_target(url, model);
      ADD_FAILURE() << url << " was accepted";
    } catch (const InvalidArgument& error) {
      EXPECT_TRUE(Contains(error.what(), fragment)) << url;
    }
  };
  expect_rejected("localhost:8500", "m", "must start with grpc://, http://, v2+grpc:// or v2+http://");
  expect_rejected("https://localhost:8501", "m", "https");
  expect_rejected("http://localhost:8501/v1/models/m", "m", "without a path");
  expect_rejected("grpc://localhost:", "m", "port ''");
  expect_rejected("grpc://localhost:http", "m", "port 'http'");
  expect_rejected("grpc://localhost:0", "m", "1..65535");
  expect_rejected("grpc://localhost:70000", "m", "1..65535");
  expect_rejected("grpc://:8500", "m", "no host");
  expect_rejected("grpc://::1:8500", "m", "brackets");
  expect_rejected("grpc://[::1", "m", "without ']'");
  expect_rejected("grpc://localhost:8500", "", "no model name");
}

TEST(WireBenchOptions, RejectsEmptyOrNonPositiveValuesBeforeSending) {
  const WireTarget target = parse_wire_target("http://127.0.0.1:1", "m");
  WireGridOptions grid;
  grid.max_id = 100;
  EXPECT_THROW(run_wire_grid(target, grid), InvalidArgument);
  grid = {};
  grid.batches = {1, 0};
  EXPECT_THROW(run_wire_grid(target, grid), InvalidArgument);
  ConcurrencyOptions sweep;
  sweep.clients = {};
  EXPECT_THROW(run_concurrency_sweep(target, sweep), InvalidArgument);
  sweep.clients = {-1};
  EXPECT_THROW(run_concurrency_sweep(target, sweep), InvalidArgument);
  WireTarget no_timeout = target;
  no_timeout.timeout_seconds = 0;
  EXPECT_THROW(run_wire_grid(no_timeout, {}), InvalidArgument);
  WireTarget no_port = target;
  no_port.port = 0;
  EXPECT_THROW(run_concurrency_sweep(no_port, {}), InvalidArgument);
}

}  // namespace
}  // namespace halfserve
