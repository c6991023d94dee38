#pragma once

#include <functional>
#include <string>
#include <vector>

#include "halfserve/bench/latency_grid.h"

namespace halfserve {

struct BenchOptions {
  GridOptions grid;
  std::vector<Precision> precisions = {Precision::fp32, Precision::fp16, Precision::bf16};
  // Peers timed in the same run: gemm (oneDNN GEMMs of the model's shapes only), torch, onnxruntime, openvino,
  // ctranslate2, tensorflow (Python, in the virtual environments scripts/python-env.sh creates).
  std::vector<std::string> peers;
  // Runs a peer other than gemm (the CLI gives one that starts the Python peers; the library starts nothing):
  // (peer, model path, precision names, grid options, inputs) -> one series per precision. Unset: such peers are
  // noted as unavailable.
  std::function<std::vector<GridSeries>(const std::string&, const std::string&, const std::vector<std::string>&,
                                        const GridOptions&, const GridInputs&)>
      run_peer;
};

struct BenchReport {
  std::string machine;     // CPU model and cores
  std::string model_path;
  std::vector<int64_t> lengths, batches;
  bool ragged = false;
  std::vector<GridSeries> series;  // halfserve's precisions first, then each peer's
  std::vector<std::string> notes;  // peers that could not run, and why
};

// Runs halfserve at every precision, then every peer on the same inputs, checking each peer's labels against
// halfserve's at the same precision (fp32 for int8).
BenchReport run_bench(const FrozenModel& model, const std::string& model_path, const BenchOptions& options);

// The seed's layout (rows engine × precision × length, columns batch, median ms), file sizes, peak RSS, and for
// each peer and shared precision the speed-up of halfserve (peer median / halfserve median) per cell.
std::string format_markdown(const BenchReport& report);
// One row per cell: engine,precision,length,batch,median_ms,p90_ms,tokens_per_second,runs
std::string format_csv(const BenchReport& report);
std::string format_json(const BenchReport& report);
// Latency against batch, one line per engine × precision × length, log scales.
std::string format_svg(const BenchReport& report);

}  // namespace halfserve
