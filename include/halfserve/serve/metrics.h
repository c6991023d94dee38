#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace halfserve {

// The server's Prometheus metrics, with TF Serving's names where TF Serving has one:
//   :tensorflow:serving:request_count{model_name,status}            counter
//   :tensorflow:serving:request_latency{model_name,API,entrypoint}   histogram, microseconds
//   :halfserve:batch_size{model_name}                                histogram, rows per model call
//   :halfserve:queue_time{model_name}                                histogram, microseconds
//   :halfserve:model_versions_available{model_name}                  gauge
class ServingMetrics {
 public:
  void count_request(const std::string& model, const std::string& status);
  // api: "predict", "punctuate", "get_model_metadata", ...; entrypoint: "REST" or "GRPC".
  void observe_latency(const std::string& model, const std::string& api, const std::string& entrypoint, double microseconds);
  void observe_batch(const std::string& model, int64_t rows, double queue_microseconds);
  void set_available_versions(const std::string& model, int64_t count);
  // The text exposition format (version 0.0.4).
  std::string prometheus_text() const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // one per bound, plus +Inf
    double sum = 0;
    uint64_t count = 0;
    void observe(double value);
  };
  using Labels = std::vector<std::pair<std::string, std::string>>;
  mutable std::mutex mutex_;
  std::map<Labels, uint64_t> request_counts_;
  std::map<Labels, Histogram> latencies_, batch_sizes_, queue_times_;
  std::map<Labels, int64_t> available_versions_;
};

}  // namespace halfserve
