#pragma once

#include <cstdint>
#include <string>

#include "halfserve/format/model_metadata.h"
#include "halfserve/format/tensor.h"
#include "halfserve/util/mapped_file.h"

namespace halfserve {

// A complete model: metadata plus exactly the tensors its architecture needs, under canonical names.
// Tensors may be views into a mapped file (load_frozen_model) or owned buffers (importers, conversion).
struct FrozenModel {
  ModelMetadata metadata;
  TensorStore tensors;
  std::string path;  // where it was loaded from, "" for a model built in memory

  // Throws Error naming the tensor (missing, unexpected, wrong shape, non-float dtype) or the metadata field.
  void validate() const;
};

// Maps (or, with FileResidence::copied, reads into owned memory) and validates a frozen file. Every error message
// starts with `path`.
FrozenModel load_frozen_model(const std::string& path, FileResidence residence = FileResidence::mapped);

// Writes the model (validated first) through a temporary file; returns the file size in bytes.
uint64_t save_frozen_model(const FrozenModel& model, const std::string& path);
// The size save_frozen_model would write, without writing.
uint64_t frozen_model_file_size(const FrozenModel& model);

}  // namespace halfserve
