#pragma once

#include <memory>
#include <string>
#include <vector>

#include "halfserve/format/tensor.h"

namespace halfserve {

// One tensor as a source file names and lays it out (TF kernels [in, out], Hugging Face weights [out, in]).
struct SourceTensorInfo {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
};

// A tensor read from a source, with whatever keeps its bytes alive.
struct LoadedTensor {
  TensorView view;
  std::shared_ptr<const void> owner;
};

// A model file (or folder) opened for reading tensors. Opening reads only the index; read() loads one tensor
// and checks its integrity (checksums where the format has them), so converting a checkpoint with optimizer
// slots never reads the slots. Every error names the file and the tensor.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // A short format name: "tf-checkpoint", "torch", "saved-model", "graphdef", "hf".
  virtual std::string format() const = 0;
  // The readable tensors (numeric dtypes), in the source's order.
  virtual const std::vector<SourceTensorInfo>& tensors() const = 0;
  // Throws Error naming the file and tensor when it is absent, truncated or fails its checksum.
  virtual LoadedTensor read(const std::string& name) = 0;
  // Entries the reader skipped and why (string tensors, object-graph records, ...).
  virtual std::vector<std::string> notes() const { return {}; }
};

}  // namespace halfserve
