#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/format/frozen_model.h"

// The in-process latency grid: batch × length cells timed for halfserve (and, through BenchOptions::run_peer, for the
// frameworks users would otherwise run), as one report.
namespace halfserve {

struct GridOptions {
  std::vector<int64_t> lengths = {64, 128};
  std::vector<int64_t> batches = {1, 8, 16, 32, 64, 128};
  EngineOptions engine;
  // Repetitions adapt to the cell's cost: at least min_repetitions timed runs and at least seconds_per_cell of
  // timing, at most max_repetitions, after one untimed warm-up run.
  int min_repetitions = 3;
  int max_repetitions = 200;
  double seconds_per_cell = 0.5;
  uint64_t seed = 7;   // for the random token ids
  bool ragged = false;  // rows of random real length, uniform over 25-100 % of the cell's length
  std::function<void(const std::string&)> progress;  // one line per finished cell
};

// The inputs every engine is timed on: one batch per (length, batch) cell, in grid order, and a small check
// batch (padded rows included) whose labels every engine must reproduce.
struct GridInputs {
  std::vector<InputBatch> cells;
  InputBatch check;
};
GridInputs make_grid_inputs(const GridOptions& options, int64_t vocab_size, int64_t max_positions);

struct LatencyCell {
  int64_t length = 0;
  int64_t batch = 0;
  std::vector<double> samples_ms;
  double median_ms = 0;
  double p90_ms = 0;
  double tokens_per_second = 0;  // real (unpadded) tokens per second at the median
};

// One engine at one precision over the whole grid.
struct GridSeries {
  std::string engine = "halfserve";
  std::string precision;    // fp32, fp16, bf16, int8
  std::string description;  // how it computed, as the engine reports it
  std::vector<LatencyCell> cells;
  std::optional<uint64_t> file_size;   // bytes of the frozen file in this precision
  std::optional<uint64_t> peak_rss;    // bytes
  std::optional<double> label_agreement;  // share of unpadded check positions labelled as halfserve labels them
  std::vector<int32_t> check_labels;      // [check rows, check length]
  std::vector<int32_t> grid_labels;       // halfserve: labels of every real token of every cell, in grid order
  std::optional<double> fp32_agreement;   // halfserve below fp32: share of grid_labels equal to fp32's
  std::string skipped;                    // why the engine did not run this precision

  const LatencyCell* find(int64_t length, int64_t batch) const;
};

// Times halfserve at one precision (the model cast to it first). Peak RSS is the process's high-water mark while
// this precision ran.
GridSeries run_halfserve_series(const FrozenModel& model, Precision precision, const GridOptions& options,
                                const GridInputs& inputs);

// Times a batch with the given repetition policy; returns the samples in milliseconds.
std::vector<double> time_repeatedly(const std::function<void()>& run_once, const GridOptions& options);
LatencyCell summarize_cell(const InputBatch& inputs, std::vector<double> samples_ms);
// Share of the check batch's unpadded positions where the two label sets agree.
double label_agreement(const InputBatch& check, const std::vector<int32_t>& a, const std::vector<int32_t>& b);

double median(std::vector<double> values);
double percentile(std::vector<double> values, double fraction);  // nearest-rank, fraction in (0, 1]
std::string describe_machine();

// Peak resident set size of this process since the last reset (VmHWM), and the reset (Linux clear_refs 5).
uint64_t peak_rss_bytes();
void reset_peak_rss();

}  // namespace halfserve
