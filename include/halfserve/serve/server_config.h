#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

// What `halfserve serve` serves, read from TF Serving's flags and text-format config files.
namespace halfserve {

struct VersionPolicy {
  enum class Kind : uint8_t { latest, all, specific };
  Kind kind = Kind::latest;
  int64_t latest_count = 1;     // Kind::latest: how many of the newest versions
  std::vector<int64_t> versions;  // Kind::specific
};

struct ServedModelConfig {
  std::string name;
  std::string base_path;  // holds one folder per numeric version, each with one frozen .safetensors file
  VersionPolicy policy;
  std::map<std::string, int64_t> version_labels;  // "stable" -> 3
};

// TF Serving's --model_config_file (text-format ModelServerConfig: model_config_list { config { name base_path
// model_platform model_version_policy version_labels } }). Throws Error naming the file and the problem.
std::vector<ServedModelConfig> read_model_config_file(const std::string& path);

// TF Serving's --batching_parameters_file (text-format BatchingParameters). allowed_batch_sizes is checked as TF
// Serving checks it (increasing, ending at max_batch_size) and then ignored: batches are never padded in rows.
struct BatchingOptions {
  int64_t max_batch_size = 32;          // rows per model call
  int64_t batch_timeout_micros = 1000;  // how long a batch waits to fill
  int64_t num_batch_threads = 1;        // concurrent model calls per model version
  int64_t max_enqueued_batches = 64;    // queue bound; beyond it requests get RESOURCE_EXHAUSTED (429)
};
BatchingOptions read_batching_parameters_file(const std::string& path);

}  // namespace halfserve
