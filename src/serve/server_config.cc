#include "halfserve/serve/server_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "halfserve/util/error.h"
#include "halfserve/util/mapped_file.h"
#include "tensorflow_serving/config/model_server_config.pb.h"
#include "tensorflow_serving/servables/tensorflow/session_bundle_config.pb.h"

namespace halfserve {

namespace {

constexpr size_t kMaxConfigBytes = 4 << 20;

// Collects text-format parse errors so the message names the line and column.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty()) first_ = "line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1) + ": " + message;
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

template <typename Message>
Message parse_text_file(const std::string& path, const std::string& what) {
  const std::string text = read_file_bounded(path, kMaxConfigBytes);
  Message message;
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  // TF Serving's files may carry fields halfserve does not use (logging_config, thread_pool_name, ...).
  parser.AllowUnknownField(true);
  if (!parser.ParseFromString(text, &message))
    throw Error(path + ": not a valid " + what + " text proto: " + (errors.first().empty() ? "parse error" : errors.first()));
  return message;
}

}  // namespace

std::vector<ServedModelConfig> read_model_config_file(const std::string& path) {
  const auto config = parse_text_file<tensorflow::serving::ModelServerConfig>(path, "ModelServerConfig");
  if (!config.has_model_config_list() || config.model_config_list().config_size() == 0)
    throw Error(path + ": no model_config_list { config { ... } } entries");
  std::vector<ServedModelConfig> models;
  for (const auto& entry : config.model_config_list().config()) {
    ServedModelConfig model;
    model.name = entry.name();
    model.base_path = entry.base_path();
    if (model.name.empty() || model.base_path.empty())
      throw Error(path + ": every config needs a name and a base_path");
    for (const auto& existing : models)
      if (existing.name == model.name) throw Error(path + ": model '" + model.name + "' is configured twice");
    if (!entry.model_platform().empty() && entry.model_platform() != "tensorflow" && entry.model_platform() != "halfserve")
      throw Error(path + ": model '" + model.name + "': model_platform '" + entry.model_platform() + "' is not supported");
    const auto& policy = entry.model_version_policy();
    if (policy.has_all()) {
      model.policy.kind = VersionPolicy::Kind::all;
    } else if (policy.has_specific()) {
      model.policy.kind = VersionPolicy::Kind::specific;
      model.policy.versions.assign(policy.specific().versions().begin(), policy.specific().versions().end());
      if (model.policy.versions.empty()) throw Error(path + ": model '" + model.name + "': specific policy lists no versions");
    } else if (policy.has_latest()) {
      model.policy.latest_count = std::max<int64_t>(1, policy.latest().num_versions());
    }
    for (const auto& [label, version] : entry.version_labels()) model.version_labels[label] = version;
    models.push_back(std::move(model));
  }
  return models;
}

BatchingOptions read_batching_parameters_file(const std::string& path) {
  const auto parameters = parse_text_file<tensorflow::serving::BatchingParameters>(path, "BatchingParameters");
  BatchingOptions options;
  if (parameters.has_max_batch_size()) options.max_batch_size = parameters.max_batch_size().value();
  if (parameters.has_batch_timeout_micros()) options.batch_timeout_micros = parameters.batch_timeout_micros().value();
  if (parameters.has_num_batch_threads()) options.num_batch_threads = parameters.num_batch_threads().value();
  if (parameters.has_max_enqueued_batches()) options.max_enqueued_batches = parameters.max_enqueued_batches().value();
  if (options.max_batch_size < 1) throw Error(path + ": max_batch_size must be positive");
  // Checked as TF Serving checks it, so a file it refuses is refused here too, then not kept: TF Serving pads a batch
  // up to the next allowed size, and halfserve's batches are never padded in rows.
  const auto& allowed = parameters.allowed_batch_sizes();
  for (int i = 0; i < allowed.size(); ++i)
    if (allowed[i] < 1 || (i > 0 && allowed[i] <= allowed[i - 1]))
      throw Error(path + ": allowed_batch_sizes must be positive and increasing");
  if (!allowed.empty() && allowed[allowed.size() - 1] != options.max_batch_size)
    throw Error(path + ": the last of allowed_batch_sizes must equal max_batch_size (" +
                std::to_string(options.max_batch_size) + ")");
  if (options.batch_timeout_micros < 0) throw Error(path + ": batch_timeout_micros must not be negative");
  if (options.num_batch_threads < 1 || options.num_batch_threads > 256) throw Error(path + ": num_batch_threads must be 1..256");
  if (options.max_enqueued_batches < 1) throw Error(path + ": max_enqueued_batches must be positive");
  return options;
}

}  // namespace halfserve
