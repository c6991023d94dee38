#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/serve/batch_scheduler.h"
#include "halfserve/serve/metrics.h"
#include "halfserve/serve/server_config.h"
#include "halfserve/serve/serving_error.h"
#include "halfserve/text/tokenizer.h"

namespace halfserve {

// TF Serving's version states, as GetModelStatus reports them.
enum class VersionState : uint8_t { unknown, start, loading, available, unloading, end };
std::string_view version_state_name(VersionState state);  // "AVAILABLE", ...
int version_state_number(VersionState state);             // ModelVersionStatus.State: 0, 10, 20, 30, 40, 50

struct VersionStatus {
  int64_t version = 0;
  VersionState state = VersionState::unknown;
  ServingCode error_code = ServingCode::ok;
  std::string error_message;
};

// One loaded, warmed-up model version and the scheduler that runs it. In-flight requests hold a shared_ptr, so a
// version that is replaced or unloaded finishes them before it goes away.
class ServedVersion {
 public:
  ServedVersion(std::string model_name, int64_t version, std::string path, std::shared_ptr<const BertModel> model,
                const BatchingOptions& batching, bool batching_enabled, ServingMetrics* metrics);
  const std::string& model_name() const { return model_name_; }
  int64_t version() const { return version_; }
  const std::string& path() const { return path_; }
  const BertModel& model() const { return *model_; }
  const ModelMetadata& metadata() const { return model_->metadata(); }
  // Null for models without a vocabulary.
  std::shared_ptr<const BertTokenizer> tokenizer() const { return tokenizer_; }
  // Blocks; through the batch scheduler.
  OutputBatch run(const InputBatch& inputs, const OutputSelection& outputs) { return scheduler_.run(inputs, outputs); }

 private:
  std::string model_name_;
  int64_t version_;
  std::string path_;
  std::shared_ptr<const BertModel> model_;
  std::shared_ptr<const BertTokenizer> tokenizer_;
  BatchScheduler scheduler_;
};

struct ModelManagerOptions {
  EngineOptions engine;
  BatchingOptions batching;
  bool batching_enabled = false;
  double poll_seconds = 1.0;  // 0: load once, never poll
  ServingMetrics* metrics = nullptr;
  std::function<void(const std::string&)> log;  // one line per load, unload and failure
};

// Serves the versions of each configured model that its policy wants: polls each base path, loads new versions
// (load, validate, warm up) before they become visible, swaps them in atomically, unloads versions the policy no
// longer wants, and records failures in the status without touching what is serving.
class ModelManager {
 public:
  ModelManager(std::vector<ServedModelConfig> models, ModelManagerOptions options);
  ~ModelManager();

  // Loads what is there now (a failure is recorded, not thrown), then starts polling.
  void start();
  void stop();

  // The version to serve: the given version, the version a label names, or the newest available one. Throws
  // ServingError(NOT_FOUND) naming the model, version or label, INVALID_ARGUMENT when both a version and a label
  // are given (every protocol's rule, here once).
  std::shared_ptr<ServedVersion> find(const std::string& model_name, std::optional<int64_t> version = std::nullopt,
                                      const std::string& label = "") const;
  // Every version known for the model (or the one asked for). Throws NOT_FOUND for an unknown model or version.
  std::vector<VersionStatus> status(const std::string& model_name, std::optional<int64_t> version = std::nullopt,
                                    const std::string& label = "") const;
  std::vector<std::string> model_names() const;
  // The model name as a metrics label value: itself when configured, "" otherwise. Model names come from clients;
  // only configured ones may become label values, so junk names cannot grow the metrics without bound.
  std::string metrics_label(const std::string& model_name) const;
  // True once every configured model has an available version.
  bool ready() const;
  // Polls all base paths now (the poll thread calls this every poll_seconds).
  void poll();

 private:
  struct ModelState;
  void poll_model(ModelState& model);
  void unload_unwanted(ModelState& model, const std::set<int64_t>& wanted, const std::set<int64_t>& present,
                       bool all_wanted_available);

  ModelManagerOptions options_;
  std::vector<std::unique_ptr<ModelState>> models_;
  mutable std::mutex mutex_;
  std::condition_variable stop_signal_;
  bool stopping_ = false;
  std::thread poller_;
};

}  // namespace halfserve
