#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

// The bench over the wire: the seed's batch × length grid and a concurrency sweep, sent as client requests to a
// running halfserve or any TF Serving-compatible server (REST :predict or gRPC PredictionService/Predict), or any
// server of the Open Inference Protocol (KServe v2: REST /infer, gRPC ModelInfer).
// Latencies are what a client sees: serialization, transport and the server's queueing and model time.
namespace halfserve {

struct WireTarget {
  enum class Protocol { grpc, rest, v2_grpc, v2_rest };
  Protocol protocol = Protocol::rest;
  std::string host;  // without brackets, also for IPv6
  int port = 0;
  std::string model_name;
  std::string signature_name = "serving_default";  // sent only when it differs, so servers pick their default
  std::string input_name = "input_ids";
  double timeout_seconds = 60;  // per request; a request that takes longer counts as an error
};

// "grpc://HOST[:PORT]" (default port 8500) or "http://HOST[:PORT][/]" (default 8501), HOST may be "[::1]"; the same
// with "v2+grpc://" and "v2+http://" for the v2 protocol.
// Throws InvalidArgument naming the problem (another scheme, a path, a bad port, an empty host or model name).
WireTarget parse_wire_target(const std::string& url, const std::string& model_name);
std::string wire_target_url(const WireTarget& target);  // "grpc://127.0.0.1:8500"

struct WireGridOptions {
  std::vector<int64_t> lengths = {64, 128};
  std::vector<int64_t> batches = {1, 8, 16, 32, 64, 128};
  // As in LatencyGridOptions: one untimed warm-up request per cell, then at least min_repetitions timed requests
  // and at least seconds_per_cell of timing, at most max_repetitions (failed requests count toward both).
  int min_repetitions = 3;
  int max_repetitions = 200;
  double seconds_per_cell = 0.5;
  int64_t max_id = 1000;  // ids are drawn from [100, max_id): every BERT vocabulary has those; must exceed 100
  uint64_t seed = 7;
  std::function<void(const std::string&)> progress;  // one line per finished cell
};

struct WireCell {
  int64_t length = 0;
  int64_t batch = 0;
  std::vector<double> samples_ms;  // successful timed requests only
  double median_ms = 0;
  double p90_ms = 0;
  int64_t requests = 0;         // every request sent for this cell, the warm-up included
  int64_t warmup_requests = 0;  // of which untimed
  int64_t errors = 0;           // of which failed (non-200 / non-OK reply, transport error, timeout)
  std::string first_error;      // empty when none failed
};

// One client on one keep-alive connection (REST) or channel (gRPC) sends the whole grid, cell after cell.
// Never throws for a failed request: failures are counted per cell.
std::vector<WireCell> run_wire_grid(const WireTarget& target, const WireGridOptions& options);

struct ConcurrencyOptions {
  std::vector<int> clients = {1, 4, 16, 64};
  double seconds = 10;  // timed window of each point
  int64_t batch = 1;
  int64_t length = 64;
  int64_t max_id = 1000;
  uint64_t seed = 7;
  std::function<void(const std::string&)> progress;  // one line per finished point
};

struct ConcurrencyPoint {
  int clients = 0;
  int64_t batch = 0;
  int64_t length = 0;
  int64_t requests = 0;         // every request this point sent, the warm-ups included
  int64_t warmup_requests = 0;  // one per client, sent on its own connection before the clock starts
  int64_t errors = 0;           // of all requests
  std::string first_error;
  double seconds = 0;     // wall time from the start of the timed window until every client has returned
  double throughput = 0;  // successful timed requests per second of `seconds`
  double p50_ms = 0, p90_ms = 0, p99_ms = 0;  // over successful timed requests
};

// For each client count: that many threads, each with its own connection (REST) or channel (gRPC), send requests
// back to back for `seconds`; requests in flight at the end finish and count.
std::vector<ConcurrencyPoint> run_concurrency_sweep(const WireTarget& target, const ConcurrencyOptions& options);

// Markdown: the seed's layout (rows length, columns batch, median ms per request), then the sweep; either part is
// left out when empty, and failed requests are listed with their first error.
std::string format_wire_report(const std::vector<WireCell>& cells, const std::vector<ConcurrencyPoint>& points,
                               const WireTarget& target);

}  // namespace halfserve
