#pragma once

#include <memory>
#include <string>

#include "halfserve/import/tensor_source.h"

namespace halfserve {

// The tensors of a plain safetensors file (Hugging Face `model.safetensors`), read in place from the map.
std::unique_ptr<TensorSource> open_safetensors_source(const std::string& path);

}  // namespace halfserve
