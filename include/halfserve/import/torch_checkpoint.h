#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "halfserve/import/tensor_source.h"

namespace halfserve {

// Largest data.pkl accepted: a state dict of 100k tensors pickles to about 15 MiB.
inline constexpr uint64_t kMaxTorchPickleBytes = 64ull << 20;

// Opens a PyTorch state dict saved by torch.save (torch >= 1.6 zip format: `<root>/data.pkl`, raw little-endian
// storages at `<root>/data/<key>`) WITHOUT executing its pickle: a restricted reader accepts only the opcodes and
// globals a state dict uses (tensors via torch._utils._rebuild_tensor_v2, OrderedDict) and refuses anything else,
// naming the global or opcode. The top level must be a dict of name -> tensor; a checkpoint that wraps it one level
// down ({"state_dict": {...}}, {"model": {...}}) is unwrapped, with a note. Opening reads only data.pkl; read()
// loads a tensor's storage on demand (shared by the tensors that view it) and checks its size. Tensors must be
// contiguous row-major. Every error names the file and, where one is involved, the tensor.
std::unique_ptr<TensorSource> open_torch_checkpoint(const std::string& path);

// True when `path` is a zip archive with a `<root>/data.pkl` entry. Never throws.
bool is_torch_checkpoint(const std::string& path);

}  // namespace halfserve
