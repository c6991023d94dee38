#include "halfserve/bench/latency_grid.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "halfserve/engine/precision_cast.h"
#include "halfserve/util/error.h"

namespace halfserve {

namespace {

// A tiny LCG: the same ids on every machine, and cheap to reproduce in the Python peers if ever needed.
class Ids {
 public:
  explicit Ids(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return state_ >> 33;
  }

 private:
  uint64_t state_;
};

InputBatch random_batch(int64_t batch, int64_t length, int64_t vocab_size, bool ragged, uint64_t seed) {
  InputBatch in;
  in.batch = batch;
  in.length = length;
  in.input_ids.resize(static_cast<size_t>(batch * length));
  in.attention_mask.assign(in.input_ids.size(), 1);
  Ids ids(seed);
  // Ids from 100 up: clear of the special tokens at the start of BERT vocabularies.
  const uint64_t span = static_cast<uint64_t>(std::max<int64_t>(1, vocab_size - 100));
  for (auto& id : in.input_ids) id = static_cast<int32_t>(std::min<int64_t>(100, vocab_size - 1) + static_cast<int64_t>(ids.next() % span));
  if (ragged) {
    const int64_t shortest = std::max<int64_t>(1, (length + 3) / 4);
    for (int64_t r = 0; r < batch; ++r) {
      const int64_t real = shortest + static_cast<int64_t>(ids.next() % static_cast<uint64_t>(length - shortest + 1));
      for (int64_t t = real; t < length; ++t) {
        in.attention_mask[static_cast<size_t>(r * length + t)] = 0;
        in.input_ids[static_cast<size_t>(r * length + t)] = 0;
      }
    }
  }
  return in;
}

int64_t real_tokens(const InputBatch& in) {
  int64_t count = 0;
  for (const int32_t m : in.attention_mask) count += m;
  return in.attention_mask.empty() ? in.batch * in.length : count;
}

uint64_t status_field_kb(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::stoull(line.substr(line.find(':') + 1));
  return 0;
}

}  // namespace

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<size_t>(std::ceil(fraction * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

std::string describe_machine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return model + ", " + std::to_string(std::thread::hardware_concurrency()) + " cores";
}

uint64_t peak_rss_bytes() { return status_field_kb("VmHWM:") * 1024; }

void reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";  // resets VmHWM to the current RSS (Linux >= 4.0); harmless where unsupported
}

const LatencyCell* GridSeries::find(int64_t length, int64_t batch) const {
  for (const auto& cell : cells)
    if (cell.length == length && cell.batch == batch) return &cell;
  return nullptr;
}

GridInputs make_grid_inputs(const GridOptions& options, int64_t vocab_size, int64_t max_positions) {
  GridInputs inputs;
  for (const int64_t length : options.lengths) {
    if (length > max_positions)
      throw InvalidArgument("length " + std::to_string(length) + " exceeds the model's " + std::to_string(max_positions) +
                            " positions");
    for (const int64_t batch : options.batches)
      inputs.cells.push_back(random_batch(batch, length, vocab_size, options.ragged,
                                          options.seed + static_cast<uint64_t>(batch * 1000 + length)));
  }
  // Four rows of different real lengths: the check covers padding too.
  const int64_t check_length = std::min<int64_t>(32, max_positions);
  inputs.check = random_batch(4, check_length, vocab_size, false, options.seed * 31 + 5);
  for (int64_t r = 1; r < 4; ++r)
    for (int64_t t = check_length - r * check_length / 4; t < check_length; ++t) {
      inputs.check.attention_mask[static_cast<size_t>(r * check_length + t)] = 0;
      inputs.check.input_ids[static_cast<size_t>(r * check_length + t)] = 0;
    }
  return inputs;
}

std::vector<double> time_repeatedly(const std::function<void()>& run_once, const GridOptions& options) {
  using clock = std::chrono::steady_clock;
  run_once();  // warm-up: primitive creation, first touch of buffers
  std::vector<double> samples;
  double spent = 0;
  while (static_cast<int>(samples.size()) < options.max_repetitions &&
         (static_cast<int>(samples.size()) < options.min_repetitions || spent < options.seconds_per_cell)) {
    const auto start = clock::now();
    run_once();
    const double seconds = std::chrono::duration<double>(clock::now() - start).count();
    samples.push_back(seconds * 1e3);
    spent += seconds;
  }
  return samples;
}

LatencyCell summarize_cell(const InputBatch& inputs, std::vector<double> samples_ms) {
  LatencyCell cell{inputs.length, inputs.batch, std::move(samples_ms), 0, 0, 0};
  cell.median_ms = median(cell.samples_ms);
  cell.p90_ms = percentile(cell.samples_ms, 0.9);
  cell.tokens_per_second = cell.median_ms > 0 ? static_cast<double>(real_tokens(inputs)) / (cell.median_ms / 1e3) : 0;
  return cell;
}

double label_agreement(const InputBatch& check, const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  int64_t compared = 0, same = 0;
  for (size_t i = 0; i < check.attention_mask.size() && i < a.size() && i < b.size(); ++i) {
    if (check.attention_mask[i] == 0) continue;
    ++compared;
    same += a[i] == b[i];
  }
  return compared == 0 ? 0.0 : static_cast<double>(same) / static_cast<double>(compared);
}

GridSeries run_halfserve_series(const FrozenModel& model, Precision precision, const GridOptions& options,
                                const GridInputs& inputs) {
  GridSeries series;
  series.precision = std::string(precision_name(precision));
  FrozenModel converted = cast_model(model, {precision, false});
  series.file_size = frozen_model_file_size(converted);
  reset_peak_rss();
  EngineOptions engine_options = options.engine;
  engine_options.precision = precision;
  const auto engine = BertModel::from_model(std::move(converted), engine_options);
  series.description = engine->describe();
  Workspace workspace;
  const bool head = engine->metadata().has_head();
  const OutputSelection outputs{head, head, !head, false};
  if (head) series.check_labels = engine->run(inputs.check, {false, true, false, false}, workspace).label_ids;
  for (const InputBatch& cell_inputs : inputs.cells) {
    // The warm-up run's labels are kept (real tokens only), so precisions can be compared on the whole grid.
    bool first_run = true;
    auto run_once = [&] {
      const OutputBatch out = engine->run(cell_inputs, outputs, workspace);
      if (!first_run || !head) return;
      first_run = false;
      for (size_t i = 0; i < out.label_ids.size(); ++i)
        if (cell_inputs.attention_mask.empty() || cell_inputs.attention_mask[i] != 0) series.grid_labels.push_back(out.label_ids[i]);
    };
    LatencyCell cell = summarize_cell(cell_inputs, time_repeatedly(run_once, options));
    if (options.progress)
      options.progress("halfserve " + series.precision + " len " + std::to_string(cell.length) + " batch " +
                       std::to_string(cell.batch) + ": median " + std::to_string(cell.median_ms) + " ms over " +
                       std::to_string(cell.samples_ms.size()) + " runs");
    series.cells.push_back(std::move(cell));
  }
  series.peak_rss = peak_rss_bytes();
  return series;
}

}  // namespace halfserve
