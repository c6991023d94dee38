#include "halfserve/serve/model_manager.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "halfserve/engine/device.h"
#include "halfserve/util/error.h"

namespace halfserve {

namespace fs = std::filesystem;

namespace {

// Concurrent batch workers split the cores between them: each computes with its share, so concurrent batches
// never oversubscribe the machine, and every worker's answer for a request is the same (the model's thread count
// is fixed at load, not taken from the calling thread).
EngineOptions engine_options_for_workers(EngineOptions engine, const BatchingOptions& batching) {
  const int workers = static_cast<int>(std::max<int64_t>(1, batching.num_batch_threads));
  if (workers > 1) engine.threads = std::max(1, (engine.threads > 0 ? engine.threads : default_cpu_threads()) / workers);
  return engine;
}

// A version folder's frozen file: the only *.safetensors in it.
std::string find_model_file(const fs::path& folder) {
  std::vector<fs::path> candidates;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") candidates.push_back(entry.path());
  if (candidates.empty()) throw Error(folder.string() + ": no .safetensors model file in the version folder");
  if (candidates.size() > 1) throw Error(folder.string() + ": several .safetensors files; a version folder holds one model");
  return candidates.front().string();
}

// What a version folder looked like when it was last loaded, so a failed version is retried only once it changes.
std::string folder_signature(const fs::path& folder) {
  std::string signature;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    if (!entry.is_regular_file(error)) continue;
    signature += entry.path().filename().string() + ":" + std::to_string(entry.file_size(error)) + ":" +
                 std::to_string(entry.last_write_time(error).time_since_epoch().count()) + ";";
  }
  return signature;
}

// Numeric subfolders of a base path, as TF Serving reads them.
std::set<int64_t> versions_on_disk(const std::string& base_path) {
  std::set<int64_t> versions;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(base_path, error)) {
    if (!entry.is_directory(error)) continue;
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.size() > 18 ||
        !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    versions.insert(std::stoll(name));
  }
  return versions;
}

std::set<int64_t> wanted_versions(const VersionPolicy& policy, const std::set<int64_t>& present) {
  std::set<int64_t> wanted;
  switch (policy.kind) {
    case VersionPolicy::Kind::all: return present;
    case VersionPolicy::Kind::specific:
      for (const int64_t version : policy.versions)
        if (present.count(version)) wanted.insert(version);
      return wanted;
    case VersionPolicy::Kind::latest:
      for (auto it = present.rbegin(); it != present.rend() && static_cast<int64_t>(wanted.size()) < policy.latest_count; ++it)
        wanted.insert(*it);
      return wanted;
  }
  return wanted;
}

}  // namespace

std::string_view version_state_name(VersionState state) {
  switch (state) {
    case VersionState::start: return "START";
    case VersionState::loading: return "LOADING";
    case VersionState::available: return "AVAILABLE";
    case VersionState::unloading: return "UNLOADING";
    case VersionState::end: return "END";
    default: return "UNKNOWN";
  }
}

int version_state_number(VersionState state) {
  switch (state) {
    case VersionState::start: return 10;
    case VersionState::loading: return 20;
    case VersionState::available: return 30;
    case VersionState::unloading: return 40;
    case VersionState::end: return 50;
    default: return 0;
  }
}

ServedVersion::ServedVersion(std::string model_name, int64_t version, std::string path, std::shared_ptr<const BertModel> model,
                             const BatchingOptions& batching, bool batching_enabled, ServingMetrics* metrics)
    : model_name_(std::move(model_name)),
      version_(version),
      path_(std::move(path)),
      model_(std::move(model)),
      tokenizer_(model_->metadata().tokenizer.vocab.empty() ? nullptr
                                                            : std::make_shared<const BertTokenizer>(model_->metadata().tokenizer)),
      scheduler_(model_, batching, batching_enabled, model_name_, metrics) {}

struct ModelManager::ModelState {
  ServedModelConfig config;
  struct Version {
    VersionStatus status;
    std::shared_ptr<ServedVersion> served;
    std::string loaded_signature;  // folder_signature at the last load attempt
  };
  std::map<int64_t, Version> versions;
  bool reported_missing_base = false;
};

ModelManager::ModelManager(std::vector<ServedModelConfig> models, ModelManagerOptions options) : options_(std::move(options)) {
  for (auto& config : models) {
    auto state = std::make_unique<ModelState>();
    state->config = std::move(config);
    models_.push_back(std::move(state));
  }
}

ModelManager::~ModelManager() { stop(); }

void ModelManager::start() {
  poll();
  if (options_.poll_seconds <= 0) return;
  poller_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      stop_signal_.wait_for(lock, std::chrono::duration<double>(options_.poll_seconds), [&] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      poll();
      lock.lock();
    }
  });
}

void ModelManager::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_signal_.notify_all();
  if (poller_.joinable()) poller_.join();
}

void ModelManager::poll() {
  static std::mutex polling;  // one poll at a time; loads happen outside the state lock
  std::lock_guard serialize(polling);
  for (auto& model : models_) poll_model(*model);
}

namespace {

// One version read, made ready to serve and warmed up; throws what loading it threw.
std::shared_ptr<ServedVersion> load_version(const std::string& name, int64_t version, const fs::path& folder,
                                            const ModelManagerOptions& options) {
  const std::string path = find_model_file(folder);
  // Read into memory the server owns: an operator's `cp` or `truncate` over the served file cannot pull pages from
  // under requests in flight (a mapping would SIGBUS); the next poll loads the new file as a new version.
  const auto engine = BertModel::from_model(load_frozen_model(path, FileResidence::copied),
                                            engine_options_for_workers(options.engine, options.batching));
  auto served = std::make_shared<ServedVersion>(name, version, path, engine, options.batching, options.batching_enabled,
                                                options.metrics);
  // Warm-up: the first call creates kernels; it must not be a client's.
  InputBatch warmup;
  warmup.batch = 1;
  warmup.length = std::min<int64_t>(8, engine->config().max_positions);
  warmup.input_ids.assign(static_cast<size_t>(warmup.length), 0);
  const bool head = engine->metadata().has_head();
  served->run(warmup, {head, head, !head, false});
  return served;
}

}  // namespace

void ModelManager::poll_model(ModelState& model) {
  auto log = [&](const std::string& line) {
    if (options_.log) options_.log(line);
  };
  const std::string& name = model.config.name;
  if (!fs::is_directory(model.config.base_path)) {
    if (!model.reported_missing_base) log("model " + name + ": base path " + model.config.base_path + " does not exist (yet)");
    model.reported_missing_base = true;
    return;
  }
  model.reported_missing_base = false;
  const std::set<int64_t> present = versions_on_disk(model.config.base_path);
  const std::set<int64_t> wanted = wanted_versions(model.config.policy, present);

  // Load what is wanted and not serving (a failed version again only once its folder changed).
  bool all_wanted_available = true;
  for (const int64_t version : wanted) {
    const fs::path folder = fs::path(model.config.base_path) / std::to_string(version);
    const std::string signature = folder_signature(folder);
    {
      std::lock_guard lock(mutex_);
      auto& entry = model.versions[version];
      if (entry.served) continue;
      if (entry.status.state == VersionState::end && entry.loaded_signature == signature) {
        all_wanted_available = false;
        continue;
      }
      entry.status = {version, VersionState::loading, ServingCode::ok, ""};
      entry.loaded_signature = signature;
    }
    std::shared_ptr<ServedVersion> served;
    VersionStatus status{version, VersionState::available, ServingCode::ok, ""};
    try {
      served = load_version(name, version, folder, options_);
      log("model " + name + " version " + std::to_string(version) + ": available (" + served->path() + ", " +
          served->model().describe() + ")");
    } catch (const std::exception& e) {
      status = {version, VersionState::end, serving_code_of(e) == ServingCode::internal ? ServingCode::unknown : serving_code_of(e),
                std::string("failed to load: ") + e.what()};
      all_wanted_available = false;
      log("model " + name + " version " + std::to_string(version) + ": " + status.error_message +
          " (the versions already serving keep serving)");
    }
    std::lock_guard lock(mutex_);
    auto& entry = model.versions[version];
    entry.status = status;
    entry.served = std::move(served);
  }

  unload_unwanted(model, wanted, present, all_wanted_available);
}

// Unloads what the policy no longer wants — but only once what replaces it is serving.
void ModelManager::unload_unwanted(ModelState& model, const std::set<int64_t>& wanted, const std::set<int64_t>& present,
                                   bool all_wanted_available) {
  const std::string& name = model.config.name;
  std::vector<std::shared_ptr<ServedVersion>> unloading;
  {
    std::lock_guard lock(mutex_);
    for (auto& [version, entry] : model.versions) {
      if (!entry.served || wanted.count(version)) continue;
      if (!all_wanted_available && present.count(version)) continue;
      entry.status.state = VersionState::unloading;
      unloading.push_back(std::move(entry.served));
      entry.served.reset();
    }
  }
  for (auto& version : unloading) {
    const int64_t number = version->version();
    version.reset();  // in-flight requests hold their own reference and finish first
    if (options_.log) options_.log("model " + name + " version " + std::to_string(number) + ": unloaded");
    std::lock_guard lock(mutex_);
    model.versions[number].status = {number, VersionState::end, ServingCode::ok, ""};
  }
  if (options_.metrics != nullptr) {
    int64_t available = 0;
    std::lock_guard lock(mutex_);
    for (const auto& [version, entry] : model.versions) available += entry.served ? 1 : 0;
    options_.metrics->set_available_versions(name, available);
  }
}

// The version a request names: the version itself, or the one its label stands for; never both.
namespace {

std::optional<int64_t> labelled_version(const ServedModelConfig& config, std::optional<int64_t> version,
                                        const std::string& label) {
  if (label.empty()) return version;
  if (version)
    throw ServingError(ServingCode::invalid_argument, "the request names both a version (" + std::to_string(*version) +
                                                          ") and a version_label ('" + label + "'); name one");
  const auto found = config.version_labels.find(label);
  if (found == config.version_labels.end())
    throw ServingError(ServingCode::not_found, "model " + config.name + " has no version label '" + label + "'");
  return found->second;
}

}  // namespace

std::shared_ptr<ServedVersion> ModelManager::find(const std::string& model_name, std::optional<int64_t> version,
                                                  const std::string& label) const {
  std::lock_guard lock(mutex_);
  const auto model = std::find_if(models_.begin(), models_.end(), [&](const auto& m) { return m->config.name == model_name; });
  if (model == models_.end()) throw ServingError(ServingCode::not_found, "Servable not found for request: Latest(" + model_name + ")");
  const auto& versions = (*model)->versions;
  version = labelled_version((*model)->config, version, label);
  if (version) {
    const auto entry = versions.find(*version);
    if (entry == versions.end() || !entry->second.served)
      throw ServingError(ServingCode::not_found,
                         "Servable not found for request: Specific(" + model_name + ", " + std::to_string(*version) + ")");
    return entry->second.served;
  }
  for (auto it = versions.rbegin(); it != versions.rend(); ++it)
    if (it->second.served) return it->second.served;
  throw ServingError(ServingCode::not_found, "Servable not found for request: Latest(" + model_name + ")");
}

std::vector<VersionStatus> ModelManager::status(const std::string& model_name, std::optional<int64_t> version,
                                                const std::string& label) const {
  std::lock_guard lock(mutex_);
  const auto model = std::find_if(models_.begin(), models_.end(), [&](const auto& m) { return m->config.name == model_name; });
  if (model == models_.end())
    throw ServingError(ServingCode::not_found, "Could not find any versions of model " + model_name);
  version = labelled_version((*model)->config, version, label);
  std::vector<VersionStatus> statuses;
  for (auto it = (*model)->versions.rbegin(); it != (*model)->versions.rend(); ++it)
    if (!version || it->first == *version) statuses.push_back(it->second.status);
  if (statuses.empty())
    throw ServingError(ServingCode::not_found, version ? "Could not find version " + std::to_string(*version) + " of model " + model_name
                                                       : "Could not find any versions of model " + model_name);
  return statuses;
}

std::string ModelManager::metrics_label(const std::string& model_name) const {
  const auto names = model_names();
  return std::find(names.begin(), names.end(), model_name) != names.end() ? model_name : "";
}

std::vector<std::string> ModelManager::model_names() const {
  std::vector<std::string> names;
  for (const auto& model : models_) names.push_back(model->config.name);
  return names;
}

bool ModelManager::ready() const {
  std::lock_guard lock(mutex_);
  for (const auto& model : models_) {
    const bool any = std::any_of(model->versions.begin(), model->versions.end(), [](const auto& v) { return v.second.served != nullptr; });
    if (!any) return false;
  }
  return !models_.empty();
}

}  // namespace halfserve
