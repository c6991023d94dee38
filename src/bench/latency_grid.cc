#include "halfserve/bench/latency_grid.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "halfserve/convert/precision_cast.h"
#include "halfserve/util/error.h"

namespace halfserve {

namespace {

InputBatch random_batch(int64_t batch, int64_t length, int64_t vocab_size, uint64_t seed) {
  InputBatch in;
  in.batch = batch;
  in.length = length;
  in.input_ids.resize(static_cast<size_t>(batch * length));
  uint64_t state = seed;
  for (auto& id : in.input_ids) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(vocab_size));
  }
  return in;
}

std::string format_ms(double ms) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(ms < 10 ? 2 : 1) << ms << "ms";
  return out.str();
}

std::string format_mb(uint64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / 1e6 << " MB";
  return out.str();
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

const LatencyCell* LatencyGridResult::find(Precision precision, int64_t length, int64_t batch) const {
  for (const auto& cell : cells)
    if (cell.precision == precision && cell.length == length && cell.batch == batch) return &cell;
  return nullptr;
}

LatencyGridResult run_latency_grid(const FrozenModel& model, const LatencyGridOptions& options) {
  using clock = std::chrono::steady_clock;
  LatencyGridResult result;
  result.machine = describe_machine();
  for (const Precision precision : options.precisions) {
    FrozenModel converted = cast_model(model, {precision, false});
    result.file_sizes[precision] = frozen_model_file_size(converted);
    EngineOptions engine_options = options.engine;
    engine_options.precision = precision;
    const auto engine = BertModel::from_model(std::move(converted), engine_options);
    result.descriptions[precision] = engine->describe();
    Workspace workspace;
    const OutputSelection outputs{true, true, false};
    for (const int64_t length : options.lengths) {
      for (const int64_t batch : options.batches) {
        const InputBatch in = random_batch(batch, length, engine->config().vocab_size, options.seed + static_cast<uint64_t>(batch * 1000 + length));
        LatencyCell cell{precision, length, batch, {}, 0, 0};
        engine->run(in, outputs, workspace);  // warm-up: primitive creation, first-touch of buffers
        double spent = 0;
        while (static_cast<int>(cell.samples_ms.size()) < options.max_repetitions &&
               (static_cast<int>(cell.samples_ms.size()) < options.min_repetitions || spent < options.seconds_per_cell)) {
          const auto start = clock::now();
          engine->run(in, outputs, workspace);
          const double seconds = std::chrono::duration<double>(clock::now() - start).count();
          cell.samples_ms.push_back(seconds * 1e3);
          spent += seconds;
        }
        cell.median_ms = median(cell.samples_ms);
        cell.p90_ms = percentile(cell.samples_ms, 0.9);
        if (options.progress)
          options.progress(std::string(precision_name(precision)) + " len " + std::to_string(length) + " batch " +
                           std::to_string(batch) + ": median " + format_ms(cell.median_ms) + " over " +
                           std::to_string(cell.samples_ms.size()) + " runs");
        result.cells.push_back(std::move(cell));
      }
    }
  }
  return result;
}

std::string format_latency_table(const LatencyGridResult& result, const LatencyGridOptions& options) {
  std::ostringstream out;
  out << "| model \\ batch |";
  for (const int64_t batch : options.batches) out << " " << batch << " |";
  out << "\n|---|";
  for (size_t i = 0; i < options.batches.size(); ++i) out << "---|";
  out << "\n";
  for (const Precision precision : options.precisions) {
    for (const int64_t length : options.lengths) {
      out << "| " << precision_name(precision) << " frozen, len " << length << " |";
      for (const int64_t batch : options.batches) {
        const LatencyCell* cell = result.find(precision, length, batch);
        out << " " << (cell != nullptr ? format_ms(cell->median_ms) : "-") << " |";
      }
      out << "\n";
    }
  }
  out << "\nMedian milliseconds per batch. Machine: " << result.machine << ".\n";
  const auto fp32_size = result.file_sizes.find(Precision::fp32);
  out << "File sizes:";
  for (const auto& [precision, bytes] : result.file_sizes) {
    out << " " << precision_name(precision) << " " << format_mb(bytes);
    if (fp32_size != result.file_sizes.end() && precision != Precision::fp32)
      out << " (" << std::fixed << std::setprecision(1) << 100.0 * static_cast<double>(bytes) / static_cast<double>(fp32_size->second)
          << " % of fp32)";
    out << ";";
  }
  out << "\n";
  for (const auto& [precision, description] : result.descriptions)
    out << "- " << description << "\n";

  if (result.file_sizes.count(Precision::fp32)) {
    for (const Precision precision : options.precisions) {
      if (precision == Precision::fp32) continue;
      out << "\nSpeed-up of " << precision_name(precision) << " over fp32 (fp32 median / " << precision_name(precision)
          << " median):\n\n| length \\ batch |";
      for (const int64_t batch : options.batches) out << " " << batch << " |";
      out << "\n|---|";
      for (size_t i = 0; i < options.batches.size(); ++i) out << "---|";
      out << "\n";
      for (const int64_t length : options.lengths) {
        out << "| len " << length << " |";
        for (const int64_t batch : options.batches) {
          const LatencyCell* base = result.find(Precision::fp32, length, batch);
          const LatencyCell* cell = result.find(precision, length, batch);
          if (base && cell && cell->median_ms > 0)
            out << " " << std::fixed << std::setprecision(2) << base->median_ms / cell->median_ms << "x |";
          else
            out << " - |";
        }
        out << "\n";
      }
    }
  }
  return out.str();
}

}  // namespace halfserve
