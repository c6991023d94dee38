#include "serve/rest_web.h"

#include <nlohmann/json.hpp>

#include "halfserve/engine/device.h"
#include "halfserve/format/dtype.h"
#include "serve/web_files.h"

namespace halfserve::rest {

namespace {

using nlohmann::ordered_json;

// One version's entry; what the engine runs only for a version that serves.
ordered_json version_json(const ModelManager& models, const std::string& name, const VersionStatus& status) {
  ordered_json entry = {{"version", status.version}, {"state", version_state_name(status.state)}};
  if (status.state != VersionState::available) return entry;
  std::shared_ptr<ServedVersion> served;
  try {
    served = models.find(name, status.version);
  } catch (const std::exception&) {
    return entry;  // unloaded since the status was read
  }
  const BertModel& model = served->model();
  entry["precision"] = precision_name(model.precision());
  entry["device"] = device_name(model.backend().device());
  entry["engine"] = model.describe();
  ordered_json labels = ordered_json::array();
  for (const Label& label : model.metadata().labels) labels.push_back(label.name);
  entry["labels"] = std::move(labels);
  entry["punctuates"] = served->tokenizer() != nullptr && model.metadata().has_head();
  return entry;
}

std::string_view content_type(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends_with(".html")) return "text/html; charset=utf-8";
  if (ends_with(".js")) return "text/javascript; charset=utf-8";
  if (ends_with(".css")) return "text/css; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace

const WebAsset* find_web_asset(std::string_view path) {
  static const std::vector<std::pair<std::string, WebAsset>> assets = [] {
    std::vector<std::pair<std::string, WebAsset>> list;
    for (size_t i = 0; i < kWebFileCount; ++i) {
      std::string path = "/";
      path.append(kWebFiles[i].name);
      list.push_back({std::move(path), {content_type(kWebFiles[i].name), kWebFiles[i].text}});
    }
    return list;
  }();
  if (path == "/") path = "/index.html";
  for (const auto& [name, asset] : assets)
    if (name == path) return &asset;
  return nullptr;
}

std::string served_models_json(const ModelManager& models) {
  ordered_json list = ordered_json::array();
  for (const std::string& name : models.model_names()) {
    ordered_json versions = ordered_json::array();
    try {
      for (const VersionStatus& status : models.status(name)) versions.push_back(version_json(models, name, status));
    } catch (const std::exception&) {
      // No version known yet: listed with none.
    }
    list.push_back({{"name", name}, {"versions", std::move(versions)}});
  }
  return ordered_json({{"models", std::move(list)}}).dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace halfserve::rest
