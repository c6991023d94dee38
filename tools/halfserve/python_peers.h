#pragma once

#include <string>
#include <vector>

#include "halfserve/bench/latency_grid.h"

// The bench's Python peers live with the CLI, not in the library: a server links libhalfserve, which never starts
// Python or looks into a source tree.
namespace halfserve::cli {

// A Python peer (torch, onnxruntime, openvino, ctranslate2, tensorflow) run as a subprocess on the same frozen
// file and inputs (tools/halfserve/peers/run_peer.py, in the environment scripts/python-env.sh creates); one series
// per precision it was asked for (skipped ones say why). Throws Error when the peer cannot be started at all (its
// environment could not be created, say).
std::vector<GridSeries> run_python_peer(const std::string& peer, const std::string& model_path,
                                        const std::vector<std::string>& precisions, const GridOptions& options,
                                        const GridInputs& inputs);

}  // namespace halfserve::cli
