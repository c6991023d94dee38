#pragma once

#include <string>
#include <string_view>

#include "halfserve/serve/model_manager.h"

// What the web page at / needs from the REST port (halfserve extensions, not TF Serving's): the page's own files,
// built into the binary (web/, embedded by web/embed.cmake), and the list of served models to choose from.
namespace halfserve::rest {

struct WebAsset {
  std::string_view content_type;
  std::string_view body;
};

// The page's file at `path` ("/" is index.html); null when there is none.
const WebAsset* find_web_asset(std::string_view path);

// GET /v1/models: {"models": [{"name", "versions": [{"version", "state", and for an available one "precision",
// "device", "engine", "labels", "punctuates"}]}]}, models in configuration order, versions newest first.
std::string served_models_json(const ModelManager& models);

}  // namespace halfserve::rest
