#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/format/frozen_model.h"

namespace halfserve {

struct LatencyGridOptions {
  std::vector<Precision> precisions = {Precision::fp32, Precision::fp16, Precision::bf16};
  std::vector<int64_t> lengths = {64, 128};
  std::vector<int64_t> batches = {1, 8, 16, 32, 64, 128};
  EngineOptions engine;
  // Repetitions adapt to the cell's cost: at least min_repetitions timed runs and at least seconds_per_cell of
  // timing, at most max_repetitions, after one untimed warm-up run.
  int min_repetitions = 3;
  int max_repetitions = 200;
  double seconds_per_cell = 0.5;
  uint64_t seed = 7;  // for the random token ids
  std::function<void(const std::string&)> progress;  // one line per finished cell
};

struct LatencyCell {
  Precision precision = Precision::fp32;
  int64_t length = 0;
  int64_t batch = 0;
  std::vector<double> samples_ms;
  double median_ms = 0;
  double p90_ms = 0;
};

struct LatencyGridResult {
  std::vector<LatencyCell> cells;
  std::map<Precision, uint64_t> file_sizes;          // bytes of the frozen file in each precision
  std::map<Precision, std::string> descriptions;     // how each precision was computed
  std::string machine;                               // CPU model and core count

  const LatencyCell* find(Precision precision, int64_t length, int64_t batch) const;
};

// Times the model at every precision × length × batch with full-length random inputs.
LatencyGridResult run_latency_grid(const FrozenModel& model, const LatencyGridOptions& options);

// The seed's layout: rows precision × length, columns batch, median milliseconds per batch; then file sizes
// and, for each reduced precision, its speed-up over fp32 per cell.
std::string format_latency_table(const LatencyGridResult& result, const LatencyGridOptions& options);

double median(std::vector<double> values);
double percentile(std::vector<double> values, double fraction);  // nearest-rank, fraction in (0, 1]
std::string describe_machine();

}  // namespace halfserve
