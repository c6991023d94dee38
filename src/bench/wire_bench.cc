#include "halfserve/bench/wire_bench.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <chrono>
#include <iomanip>
#include <latch>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "halfserve/bench/latency_grid.h"
#include "halfserve/util/status_code.h"
#include "halfserve/util/error.h"
#include "inference/grpc_predict_v2.grpc.pb.h"
#include "tensorflow_serving/apis/prediction_service.grpc.pb.h"

namespace halfserve {

namespace {

namespace tfs = tensorflow::serving;
using Clock = std::chrono::steady_clock;

constexpr int64_t kLowestId = 100;  // below it BERT vocabularies keep [PAD], [unused*], [CLS], [SEP], [MASK]
constexpr int kDefaultGrpcPort = 8500;
constexpr int kDefaultRestPort = 8501;
constexpr size_t kMaxErrorBodyChars = 300;

// ---- requests ----

std::vector<int32_t> random_ids(int64_t count, int64_t max_id, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(count));
  uint64_t state = seed;
  for (auto& id : ids) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<int32_t>(kLowestId + static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(max_id - kLowestId)));
  }
  return ids;
}

// The column form, ids only: servers default the mask to all ones.
std::string rest_body(const WireTarget& target, int64_t batch, int64_t length, const std::vector<int32_t>& ids) {
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t row = 0; row < batch; ++row)
    rows.push_back(std::vector<int32_t>(ids.begin() + row * length, ids.begin() + (row + 1) * length));
  nlohmann::json body = {{"inputs", {{target.input_name, std::move(rows)}}}};
  if (target.signature_name != "serving_default") body["signature_name"] = target.signature_name;
  return body.dump();
}

// The v2 protocol's infer body with a JSON tensor, as tritonclient sends it with binary_data=False: INT32
// [batch, length], row-major; JSON outputs, like TF Serving's REST replies.
std::string v2_rest_body(const WireTarget& target, int64_t batch, int64_t length, const std::vector<int32_t>& ids) {
  nlohmann::json input = {{"name", target.input_name}, {"shape", {batch, length}}, {"datatype", "INT32"}, {"data", ids}};
  return nlohmann::json{{"inputs", nlohmann::json::array({std::move(input)})}}.dump();
}

std::string little_endian_ids(const std::vector<int32_t>& ids) {
  std::string content;
  content.reserve(ids.size() * 4);
  for (const int32_t id : ids) {
    const auto bits = static_cast<uint32_t>(id);
    for (int shift = 0; shift < 32; shift += 8) content.push_back(static_cast<char>((bits >> shift) & 0xff));
  }
  return content;
}

// ModelInfer with the ids as raw_input_contents, as tritonclient sends them.
inference::ModelInferRequest v2_grpc_request(const WireTarget& target, int64_t batch, int64_t length,
                                             const std::vector<int32_t>& ids) {
  inference::ModelInferRequest request;
  request.set_model_name(target.model_name);
  auto& input = *request.add_inputs();
  input.set_name(target.input_name);
  input.set_datatype("INT32");
  input.add_shape(batch);
  input.add_shape(length);
  request.add_raw_input_contents(little_endian_ids(ids));
  return request;
}

// DT_INT32 [batch, length] as little-endian tensor_content, the compact form TF's own clients send.
tfs::PredictRequest grpc_request(const WireTarget& target, int64_t batch, int64_t length, const std::vector<int32_t>& ids) {
  tfs::PredictRequest request;
  request.mutable_model_spec()->set_name(target.model_name);
  if (target.signature_name != "serving_default") request.mutable_model_spec()->set_signature_name(target.signature_name);
  tensorflow::TensorProto& tensor = (*request.mutable_inputs())[target.input_name];
  tensor.set_dtype(tensorflow::DT_INT32);
  tensor.mutable_tensor_shape()->add_dim()->set_size(batch);
  tensor.mutable_tensor_shape()->add_dim()->set_size(length);
  tensor.set_tensor_content(little_endian_ids(ids));
  return request;
}

// Built once per cell or point, outside the timed loop; only the target's protocol is filled.
struct PreparedRequest {
  std::string rest_body;  // TF Serving's or the v2 protocol's, by the target's protocol
  tfs::PredictRequest grpc;
  inference::ModelInferRequest v2_grpc;
};

PreparedRequest prepare_request(const WireTarget& target, int64_t batch, int64_t length, int64_t max_id, uint64_t seed) {
  const std::vector<int32_t> ids = random_ids(batch * length, max_id, seed);
  PreparedRequest request;
  switch (target.protocol) {
    case WireTarget::Protocol::rest: request.rest_body = rest_body(target, batch, length, ids); break;
    case WireTarget::Protocol::grpc: request.grpc = grpc_request(target, batch, length, ids); break;
    case WireTarget::Protocol::v2_rest: request.rest_body = v2_rest_body(target, batch, length, ids); break;
    case WireTarget::Protocol::v2_grpc: request.v2_grpc = v2_grpc_request(target, batch, length, ids); break;
  }
  return request;
}

// ---- clients ----

// TF Serving's REST replies carry only the HTTP status; naming the gRPC code it stands for makes REST and gRPC
// errors read alike.
std::string_view code_for_http_status(int status) {
  switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 409: return "ABORTED";
    case 413: return "RESOURCE_EXHAUSTED";
    case 429: return "RESOURCE_EXHAUSTED";
    case 499: return "CANCELLED";
    case 500: return "INTERNAL";
    case 501: return "UNIMPLEMENTED";
    case 503: return "UNAVAILABLE";
    case 504: return "DEADLINE_EXCEEDED";
    default: return "UNKNOWN";
  }
}

// {"error": "..."}'s message, or the start of whatever else came back.
std::string error_text(const std::string& body) {
  const auto reply = nlohmann::json::parse(body, nullptr, false);
  if (reply.is_object() && reply.contains("error") && reply["error"].is_string()) return reply["error"].get<std::string>();
  return body.size() > kMaxErrorBodyChars ? body.substr(0, kMaxErrorBodyChars) + "..." : body;
}

class PredictClient {
 public:
  virtual ~PredictClient() = default;
  // Sends the request once and waits for the whole reply: nullopt when it succeeded, else what went wrong.
  virtual std::optional<std::string> send(const PreparedRequest& request) = 0;
};

// TF Serving's :predict or the v2 protocol's /infer: one JSON POST either way.
class RestPredictClient : public PredictClient {
 public:
  explicit RestPredictClient(const WireTarget& target)
      : client_(target.host, target.port),
        path_(target.protocol == WireTarget::Protocol::v2_rest ? "/v2/models/" + target.model_name + "/infer"
                                                                : "/v1/models/" + target.model_name + ":predict") {
    const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(target.timeout_seconds));
    client_.set_keep_alive(true);
    // cpp-httplib writes headers and body separately: with Nagle's algorithm the body waits for the server's
    // delayed ACK, adding ~40 ms to every request.
    client_.set_tcp_nodelay(true);
    client_.set_connection_timeout(timeout);
    client_.set_read_timeout(timeout);
    client_.set_write_timeout(timeout);
  }

  std::optional<std::string> send(const PreparedRequest& request) override {
    const httplib::Result result = client_.Post(path_, request.rest_body, "application/json");
    if (!result) return "REST transport error: " + httplib::to_string(result.error());
    if (result->status == 200) return std::nullopt;
    return "HTTP " + std::to_string(result->status) + " (" + std::string(code_for_http_status(result->status)) +
           "): " + error_text(result->body);
  }

 private:
  httplib::Client client_;
  std::string path_;
};

// A channel of its own to the target: channels to one target share a connection by default; each client thread
// must have its own, as separate client processes would.
std::shared_ptr<grpc::Channel> own_channel(const WireTarget& target) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(-1);  // a big batch's logits exceed gRPC's 4 MiB default
  arguments.SetMaxSendMessageSize(-1);
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  const std::string address = target.host.find(':') != std::string::npos ? "[" + target.host + "]" : target.host;
  return grpc::CreateCustomChannel(address + ":" + std::to_string(target.port), grpc::InsecureChannelCredentials(),
                                   arguments);
}

std::optional<std::string> grpc_error(const grpc::Status& status) {
  if (status.ok()) return std::nullopt;
  // ServingCode uses gRPC's numbers.
  return "gRPC " + std::string(serving_code_name(static_cast<ServingCode>(status.error_code()))) + ": " +
         status.error_message();
}

// TF Serving's PredictionService/Predict or the v2 protocol's GRPCInferenceService/ModelInfer.
class GrpcPredictClient : public PredictClient {
 public:
  explicit GrpcPredictClient(const WireTarget& target) : timeout_(target.timeout_seconds) {
    const auto channel = own_channel(target);
    if (target.protocol == WireTarget::Protocol::v2_grpc) v2_stub_ = inference::GRPCInferenceService::NewStub(channel);
    else stub_ = tfs::PredictionService::NewStub(channel);
  }

  std::optional<std::string> send(const PreparedRequest& request) override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(timeout_));
    if (v2_stub_) {
      inference::ModelInferResponse response;
      return grpc_error(v2_stub_->ModelInfer(&context, request.v2_grpc, &response));
    }
    tfs::PredictResponse response;
    return grpc_error(stub_->Predict(&context, request.grpc, &response));
  }

 private:
  std::chrono::duration<double> timeout_;
  std::unique_ptr<tfs::PredictionService::Stub> stub_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> v2_stub_;
};

bool is_rest(WireTarget::Protocol protocol) {
  return protocol == WireTarget::Protocol::rest || protocol == WireTarget::Protocol::v2_rest;
}

std::unique_ptr<PredictClient> make_client(const WireTarget& target) {
  if (is_rest(target.protocol)) return std::make_unique<RestPredictClient>(target);
  return std::make_unique<GrpcPredictClient>(target);
}

struct Attempt {
  double ms = 0;
  std::optional<std::string> error;
};

Attempt timed_send(PredictClient& client, const PreparedRequest& request) {
  const auto start = Clock::now();
  Attempt attempt;
  try {
    attempt.error = client.send(request);
  } catch (const std::exception& error) {  // a client library that throws still must not end the run
    attempt.error = std::string("client error: ") + error.what();
  }
  attempt.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return attempt;
}

// Counts requests and failures, keeping the first failure's message.
struct RequestTally {
  int64_t requests = 0;
  int64_t errors = 0;
  std::string first_error;
  std::vector<double> success_ms;

  void add(const Attempt& attempt, bool timed) {
    ++requests;
    if (attempt.error) {
      if (errors++ == 0) first_error = *attempt.error;
    } else if (timed) {
      success_ms.push_back(attempt.ms);
    }
  }
  void merge(RequestTally&& other) {
    requests += other.requests;
    if (errors == 0) first_error = std::move(other.first_error);
    errors += other.errors;
    success_ms.insert(success_ms.end(), other.success_ms.begin(), other.success_ms.end());
  }
};

// ---- formatting ----

std::string format_ms(double ms) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(ms < 10 ? 2 : 1) << ms << "ms";
  return out.str();
}

std::string format_rate(double per_second) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << per_second;
  return out.str();
}

std::string protocol_name(WireTarget::Protocol protocol) {
  switch (protocol) {
    case WireTarget::Protocol::grpc: return "gRPC Predict";
    case WireTarget::Protocol::rest: return "REST :predict";
    case WireTarget::Protocol::v2_rest: return "v2 REST /infer";
    case WireTarget::Protocol::v2_grpc: return "v2 gRPC ModelInfer";
  }
  return "";
}

// The URL schemes of --target, by protocol.
struct Scheme {
  const char* prefix;
  WireTarget::Protocol protocol;
  int default_port;
};
constexpr Scheme kSchemes[] = {{"grpc://", WireTarget::Protocol::grpc, kDefaultGrpcPort},
                               {"http://", WireTarget::Protocol::rest, kDefaultRestPort},
                               {"v2+http://", WireTarget::Protocol::v2_rest, kDefaultRestPort},
                               {"v2+grpc://", WireTarget::Protocol::v2_grpc, kDefaultGrpcPort}};

// Distinct values in first-seen order: the table keeps the order the grid ran in.
std::vector<int64_t> distinct(const std::vector<WireCell>& cells, int64_t WireCell::*field) {
  std::vector<int64_t> values;
  for (const auto& cell : cells)
    if (std::find(values.begin(), values.end(), cell.*field) == values.end()) values.push_back(cell.*field);
  return values;
}

void format_grid(std::ostringstream& out, const std::vector<WireCell>& cells) {
  const std::vector<int64_t> lengths = distinct(cells, &WireCell::length);
  const std::vector<int64_t> batches = distinct(cells, &WireCell::batch);
  out << "| length \\ batch |";
  for (const int64_t batch : batches) out << " " << batch << " |";
  out << "\n|---|";
  for (size_t i = 0; i < batches.size(); ++i) out << "---|";
  out << "\n";
  for (const int64_t length : lengths) {
    out << "| len " << length << " |";
    for (const int64_t batch : batches) {
      const auto cell = std::find_if(cells.begin(), cells.end(),
                                     [&](const WireCell& c) { return c.length == length && c.batch == batch; });
      out << " " << (cell != cells.end() && !cell->samples_ms.empty() ? format_ms(cell->median_ms) : "-") << " |";
    }
    out << "\n";
  }
  out << "\nMedian milliseconds per request, as the client sees it (one client, one keep-alive connection, random ids, "
         "no mask). Client machine: "
      << describe_machine() << ".\n";
  for (const auto& cell : cells)
    if (cell.errors > 0)
      out << "- len " << cell.length << " batch " << cell.batch << ": " << cell.errors << " of " << cell.requests
          << " requests failed; first: " << cell.first_error << "\n";
}

void format_sweep(std::ostringstream& out, const std::vector<ConcurrencyPoint>& points) {
  const ConcurrencyPoint& first = points.front();
  out << "Concurrent clients, each on its own connection, batch " << first.batch << ", length " << first.length
      << ", about " << format_rate(first.seconds) << " s per point:\n\n"
      << "| clients | requests/s | p50 | p90 | p99 | requests | errors |\n|---|---|---|---|---|---|---|\n";
  for (const auto& point : points) {
    // Without one successful request the percentiles are not zero milliseconds but unknown.
    const auto latency = [&](double ms) { return point.throughput > 0 ? format_ms(ms) : std::string("-"); };
    out << "| " << point.clients << " | " << format_rate(point.throughput) << " | " << latency(point.p50_ms) << " | "
        << latency(point.p90_ms) << " | " << latency(point.p99_ms) << " | " << point.requests << " | " << point.errors
        << " |\n";
  }
  out << "\nrequests/s counts successful timed requests; requests include one untimed warm-up per client.\n";
  for (const auto& point : points)
    if (point.errors > 0)
      out << "- " << point.clients << " clients: " << point.errors << " of " << point.requests
          << " requests failed; first: " << point.first_error << "\n";
}

void check_max_id(int64_t max_id) {
  if (max_id <= kLowestId)
    throw InvalidArgument("max id " + std::to_string(max_id) + " leaves no ids: ids are drawn from [" +
                          std::to_string(kLowestId) + ", max id)");
}

void check_positive(const std::vector<int64_t>& values, const std::string& what) {
  if (values.empty()) throw InvalidArgument("no " + what + " given");
  for (const int64_t value : values)
    if (value <= 0) throw InvalidArgument(what + " must be positive, got " + std::to_string(value));
}

// A hand-built target gets the checks parse_wire_target makes, before any request goes out.
void check_target(const WireTarget& target) {
  if (target.host.empty()) throw InvalidArgument("the target names no host");
  if (target.port < 1 || target.port > 65535)
    throw InvalidArgument("target port " + std::to_string(target.port) + " is not in 1..65535");
  if (target.model_name.empty()) throw InvalidArgument("the target names no model");
  if (target.input_name.empty()) throw InvalidArgument("the target names no input");
  if (!(target.timeout_seconds > 0)) throw InvalidArgument("the request timeout must be positive");
}

int parse_port(const std::string& text, const std::string& url) {
  int port = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || port < 1 || port > 65535)
    throw InvalidArgument("target '" + url + "': port '" + text + "' is not a number in 1..65535");
  return port;
}

}  // namespace

WireTarget parse_wire_target(const std::string& url, const std::string& model_name) {
  WireTarget target;
  std::string rest;
  const Scheme* scheme = std::find_if(std::begin(kSchemes), std::end(kSchemes),
                                      [&](const Scheme& s) { return url.rfind(s.prefix, 0) == 0; });
  if (scheme == std::end(kSchemes))
    throw InvalidArgument("target '" + url + "' must start with grpc://, http://, v2+grpc:// or v2+http:// (https is "
                          "not supported)");
  target.protocol = scheme->protocol;
  target.port = scheme->default_port;
  rest = url.substr(std::strlen(scheme->prefix));
  if (is_rest(target.protocol) && !rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos)
    throw InvalidArgument("target '" + url + "' must be scheme://host[:port], without a path");
  size_t port_separator = std::string::npos;
  if (!rest.empty() && rest.front() == '[') {  // [IPv6]:port
    const size_t close = rest.find(']');
    if (close == std::string::npos) throw InvalidArgument("target '" + url + "': '[' without ']'");
    target.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') throw InvalidArgument("target '" + url + "': expected ':port' after ']'");
      port_separator = close + 1;
    }
  } else {
    port_separator = rest.find(':');
    target.host = rest.substr(0, port_separator);
    if (port_separator != std::string::npos && rest.find(':', port_separator + 1) != std::string::npos)
      throw InvalidArgument("target '" + url + "': write an IPv6 host in brackets, as [::1]:8500");
  }
  if (port_separator != std::string::npos) target.port = parse_port(rest.substr(port_separator + 1), url);
  if (target.host.empty()) throw InvalidArgument("target '" + url + "' names no host");
  if (model_name.empty()) throw InvalidArgument("no model name given for target '" + url + "'");
  target.model_name = model_name;
  return target;
}

std::string wire_target_url(const WireTarget& target) {
  const std::string host = target.host.find(':') != std::string::npos ? "[" + target.host + "]" : target.host;
  const Scheme* scheme = std::find_if(std::begin(kSchemes), std::end(kSchemes),
                                      [&](const Scheme& s) { return s.protocol == target.protocol; });
  return std::string(scheme->prefix) + host + ":" +
         std::to_string(target.port);
}

std::vector<WireCell> run_wire_grid(const WireTarget& target, const WireGridOptions& options) {
  check_target(target);
  check_positive(options.lengths, "lengths");
  check_positive(options.batches, "batches");
  check_max_id(options.max_id);
  const std::unique_ptr<PredictClient> client = make_client(target);
  std::vector<WireCell> cells;
  for (const int64_t length : options.lengths) {
    for (const int64_t batch : options.batches) {
      const PreparedRequest request =
          prepare_request(target, batch, length, options.max_id, options.seed + static_cast<uint64_t>(batch * 1000 + length));
      RequestTally tally;
      // Warm-up: the connection, and the server's first run of this shape.
      tally.add(timed_send(*client, request), false);
      int timed = 0;
      double spent = 0;
      while (timed < options.max_repetitions && (timed < options.min_repetitions || spent < options.seconds_per_cell)) {
        const Attempt attempt = timed_send(*client, request);
        tally.add(attempt, true);
        ++timed;
        spent += attempt.ms / 1e3;
      }
      WireCell cell{length, batch, std::move(tally.success_ms), 0, 0, tally.requests, 1, tally.errors, tally.first_error};
      cell.median_ms = median(cell.samples_ms);
      cell.p90_ms = percentile(cell.samples_ms, 0.9);
      if (options.progress)
        options.progress("len " + std::to_string(length) + " batch " + std::to_string(batch) + ": median " +
                         format_ms(cell.median_ms) + " over " + std::to_string(cell.samples_ms.size()) + " requests" +
                         (cell.errors ? ", " + std::to_string(cell.errors) + " failed: " + cell.first_error : ""));
      cells.push_back(std::move(cell));
    }
  }
  return cells;
}

namespace {

// One point of the sweep: every client connects and sends its warm-up, then all start together on the clock.
ConcurrencyPoint run_concurrency_point(const WireTarget& target, const ConcurrencyOptions& options, int clients) {
  // Requests and clients are made here, so the threads do nothing that can throw.
  std::vector<PreparedRequest> requests;
  std::vector<std::unique_ptr<PredictClient>> connections;
  for (int index = 0; index < clients; ++index) {
    // Each client its own ids, so a server cannot answer from a cache.
    requests.push_back(prepare_request(target, options.batch, options.length, options.max_id,
                                       options.seed + static_cast<uint64_t>(index) * 7919));
    connections.push_back(make_client(target));
  }
  std::vector<RequestTally> tallies(static_cast<size_t>(clients));
  std::latch warmed_up(clients);
  std::latch go(1);
  Clock::time_point deadline;  // written before `go` opens, read after
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(clients));
  for (size_t index = 0; index < static_cast<size_t>(clients); ++index) {
    threads.emplace_back([&, index] {
      PredictClient& client = *connections[index];
      RequestTally& tally = tallies[index];
      tally.add(timed_send(client, requests[index]), false);  // connects; the server's first run of this shape
      warmed_up.count_down();
      go.wait();
      while (Clock::now() < deadline) tally.add(timed_send(client, requests[index]), true);
    });
  }
  warmed_up.wait();
  const auto start = Clock::now();
  deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.seconds));
  go.count_down();
  for (auto& thread : threads) thread.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  RequestTally total;
  for (auto& tally : tallies) total.merge(std::move(tally));
  ConcurrencyPoint point;
  point.clients = clients;
  point.batch = options.batch;
  point.length = options.length;
  point.requests = total.requests;
  point.warmup_requests = clients;
  point.errors = total.errors;
  point.first_error = total.first_error;
  point.seconds = seconds;
  point.throughput = seconds > 0 ? static_cast<double>(total.success_ms.size()) / seconds : 0;
  point.p50_ms = percentile(total.success_ms, 0.5);
  point.p90_ms = percentile(total.success_ms, 0.9);
  point.p99_ms = percentile(total.success_ms, 0.99);
  return point;
}

}  // namespace

std::vector<ConcurrencyPoint> run_concurrency_sweep(const WireTarget& target, const ConcurrencyOptions& options) {
  check_target(target);
  check_positive({options.batch}, "batch");
  check_positive({options.length}, "length");
  check_max_id(options.max_id);
  if (options.clients.empty()) throw InvalidArgument("no client counts given");
  for (const int clients : options.clients)
    if (clients <= 0) throw InvalidArgument("client counts must be positive, got " + std::to_string(clients));
  if (!(options.seconds >= 0)) throw InvalidArgument("seconds per point must be non-negative");
  std::vector<ConcurrencyPoint> points;
  for (const int clients : options.clients) {
    points.push_back(run_concurrency_point(target, options, clients));
    const ConcurrencyPoint& point = points.back();
    if (options.progress)
      options.progress(std::to_string(clients) + " clients: " + format_rate(point.throughput) + " requests/s, p50 " +
                       format_ms(point.p50_ms) + ", p99 " + format_ms(point.p99_ms) +
                       (point.errors ? ", " + std::to_string(point.errors) + " failed: " + point.first_error : ""));
  }
  return points;
}

std::string format_wire_report(const std::vector<WireCell>& cells, const std::vector<ConcurrencyPoint>& points,
                               const WireTarget& target) {
  std::ostringstream out;
  out << "## Over the wire: " << protocol_name(target.protocol) << ", " << wire_target_url(target) << ", model "
      << target.model_name << "\n\n";
  if (!cells.empty()) format_grid(out, cells);
  if (!cells.empty() && !points.empty()) out << "\n";
  if (!points.empty()) format_sweep(out, points);
  return out.str();
}

}  // namespace halfserve
