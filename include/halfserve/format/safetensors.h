#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "halfserve/format/tensor.h"
#include "halfserve/util/mapped_file.h"

namespace halfserve {

// Largest JSON header accepted, as in the reference safetensors implementation.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// A safetensors file mapped into memory with every header field checked against the file: dtypes, shapes,
// offsets inside the data area, byte counts matching shapes, no overlaps, no unaccounted bytes.
struct SafetensorsFile {
  std::shared_ptr<const MappedFile> file;
  TensorStore tensors;                          // views into `file`, in data-offset order
  std::map<std::string, std::string> metadata;  // the "__metadata__" object
};

// Throws Error naming `path` and the problem for anything malformed.
SafetensorsFile read_safetensors(const std::string& path, FileResidence residence = FileResidence::mapped);

// One tensor to write; its bytes must already be in `dtype`.
struct NamedTensor {
  std::string name;
  TensorView view;
};

// The bytes of a safetensors file laid out for writing. Tensors are placed by decreasing element size so
// every tensor starts aligned to its element size, and the data area starts on a 64-byte boundary.
class SafetensorsLayout {
 public:
  SafetensorsLayout(std::vector<NamedTensor> tensors, const std::map<std::string, std::string>& metadata);
  uint64_t file_size() const { return 8 + header_.size() + data_size_; }
  // Writes through a temporary file and renames it into place.
  void write(const std::string& path) const;

 private:
  std::vector<NamedTensor> tensors_;
  std::string header_;
  uint64_t data_size_ = 0;
};

}  // namespace halfserve
