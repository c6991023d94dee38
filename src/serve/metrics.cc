#include "halfserve/serve/metrics.h"

#include <cmath>
#include <sstream>

namespace halfserve {

namespace {

// Microsecond latency buckets (as TF Serving's request_latency, which grows by ~1.8x from 10 µs).
std::vector<double> latency_bounds() {
  std::vector<double> bounds;
  for (double bound = 10; bound < 6e7; bound *= 1.8) bounds.push_back(std::round(bound));
  return bounds;
}

std::vector<double> batch_bounds() { return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}; }

std::string escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string label_text(const std::vector<std::pair<std::string, std::string>>& labels, const std::string& extra = "") {
  std::string text;
  for (const auto& [name, value] : labels) text += (text.empty() ? "" : ",") + name + "=\"" + escape(value) + "\"";
  if (!extra.empty()) text += (text.empty() ? "" : ",") + extra;
  return text.empty() ? "" : "{" + text + "}";
}

std::string number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace

void ServingMetrics::Histogram::observe(double value) {
  size_t bucket = 0;
  while (bucket < bounds.size() && value > bounds[bucket]) ++bucket;
  ++counts[bucket];
  sum += value;
  ++count;
}

void ServingMetrics::count_request(const std::string& model, const std::string& status) {
  std::lock_guard lock(mutex_);
  ++request_counts_[{{"model_name", model}, {"status", status}}];
}

void ServingMetrics::observe_latency(const std::string& model, const std::string& api, const std::string& entrypoint,
                                     double microseconds) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = latencies_.try_emplace({{"model_name", model}, {"API", api}, {"entrypoint", entrypoint}});
  if (inserted) it->second.bounds = latency_bounds(), it->second.counts.assign(it->second.bounds.size() + 1, 0);
  it->second.observe(microseconds);
}

void ServingMetrics::observe_batch(const std::string& model, int64_t rows, double queue_microseconds) {
  std::lock_guard lock(mutex_);
  const Labels labels{{"model_name", model}};
  auto [size, new_size] = batch_sizes_.try_emplace(labels);
  if (new_size) size->second.bounds = batch_bounds(), size->second.counts.assign(size->second.bounds.size() + 1, 0);
  size->second.observe(static_cast<double>(rows));
  auto [queue, new_queue] = queue_times_.try_emplace(labels);
  if (new_queue) queue->second.bounds = latency_bounds(), queue->second.counts.assign(queue->second.bounds.size() + 1, 0);
  queue->second.observe(queue_microseconds);
}

void ServingMetrics::set_available_versions(const std::string& model, int64_t count) {
  std::lock_guard lock(mutex_);
  available_versions_[{{"model_name", model}}] = count;
}

std::string ServingMetrics::prometheus_text() const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  auto histograms = [&](const char* name, const char* help, const std::map<Labels, Histogram>& series) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    for (const auto& [labels, histogram] : series) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= histogram.bounds.size(); ++i) {
        cumulative += histogram.counts[i];
        const std::string le = i < histogram.bounds.size() ? number(histogram.bounds[i]) : "+Inf";
        out << name << "_bucket" << label_text(labels, "le=\"" + le + "\"") << " " << cumulative << "\n";
      }
      out << name << "_sum" << label_text(labels) << " " << number(histogram.sum) << "\n";
      out << name << "_count" << label_text(labels) << " " << histogram.count << "\n";
    }
  };
  out << "# HELP :tensorflow:serving:request_count The total number of requests.\n"
      << "# TYPE :tensorflow:serving:request_count counter\n";
  for (const auto& [labels, count] : request_counts_) out << ":tensorflow:serving:request_count" << label_text(labels) << " " << count << "\n";
  histograms(":tensorflow:serving:request_latency", "Distribution of request latency in microseconds.", latencies_);
  histograms(":halfserve:batch_size", "Rows per model call.", batch_sizes_);
  histograms(":halfserve:queue_time", "Time a request waited for its model call, in microseconds.", queue_times_);
  out << "# HELP :halfserve:model_versions_available Model versions serving now.\n"
      << "# TYPE :halfserve:model_versions_available gauge\n";
  for (const auto& [labels, count] : available_versions_)
    out << ":halfserve:model_versions_available" << label_text(labels) << " " << count << "\n";
  return out.str();
}

}  // namespace halfserve
