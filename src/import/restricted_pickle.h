#pragma once

// A pickle reader that never executes anything: it understands only the opcodes and globals a PyTorch state dict
// needs, and turns the few allowed callables (`_rebuild_tensor_v2`, `_rebuild_parameter`, `OrderedDict`) into plain
// values instead of calling them. Everything else is refused with an Error naming the opcode or global.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "halfserve/format/tensor.h"

namespace halfserve {

// Bounds on what one pickle may build, so a hostile file costs bounded memory and time.
struct PickleLimits {
  size_t max_stack = 1 << 16;        // values on the stack at once (torch batches SETITEMS by 1000 pairs)
  size_t max_marks = 64;             // open MARKs at once (a state dict needs 3)
  size_t max_nesting = 64;           // containers inside containers (a state dict needs about 5)
  size_t max_memo_entries = 1 << 21;
  size_t max_objects = 1 << 21;      // about 100k tensors' worth
  size_t max_global_name = 256;      // bytes of a GLOBAL module or name
};

enum class PickleKind : uint8_t {
  none,
  boolean,
  integer,
  floating,
  string,      // BINUNICODE and BINSTRING alike (torch.load decodes both as str)
  tuple,
  list,
  dict,
  global,      // one of the allow-listed globals, never called
  storage,     // a persistent id ('storage', <Type>Storage, key, location, numel)
  tensor,      // the value _rebuild_tensor_v2 (or _rebuild_parameter) would have built
};

std::string_view pickle_kind_name(PickleKind kind);  // "an integer", "a tuple", ...

enum class PickleGlobal : uint8_t { ordered_dict, rebuild_tensor_v2, rebuild_parameter, storage_type };

struct PickleObject;
using PickleRef = const PickleObject*;

// A storage named by a persistent id; its bytes live in the checkpoint's `data/<key>` entry.
struct PickleStorage {
  DType dtype = DType::f32;
  std::string key;
  std::string location;  // "cpu", "cuda:0": where torch would have put it; ignored
  int64_t numel = 0;     // elements of `dtype`
};

// The arguments _rebuild_tensor_v2 received, unchecked beyond their types: the caller knows the tensor's name and
// so reports layout problems (strides, offsets past the storage) better.
struct PickleTensor {
  PickleStorage storage;
  int64_t storage_offset = 0;  // in elements
  Shape size;
  std::vector<int64_t> stride;
};

struct PickleObject {
  PickleKind kind = PickleKind::none;
  int64_t integer = 0;  // integer; boolean as 0 or 1
  double floating = 0;
  std::string text;     // string; a global's dotted name
  PickleGlobal global = PickleGlobal::ordered_dict;
  std::optional<DType> storage_type;                      // for PickleGlobal::storage_type
  bool ordered = false;                                    // a dict built by OrderedDict()
  size_t nesting = 0;                                      // containers below this one, deepest path
  std::vector<PickleRef> items;                            // tuple and list elements
  std::vector<std::pair<PickleRef, PickleRef>> entries;    // dict entries in insertion order
  std::unique_ptr<PickleStorage> storage;
  std::unique_ptr<PickleTensor> tensor;
};

// Every value a pickle built, owned together so references between them (the memo shares objects) need no
// reference counting and cycles cost nothing.
class PickleDocument {
 public:
  PickleDocument() : arena_(std::make_unique<std::deque<PickleObject>>()) {}
  const PickleObject& root() const { return *root_; }

 private:
  friend class RestrictedUnpickler;
  std::unique_ptr<std::deque<PickleObject>> arena_;  // a deque keeps addresses stable as it grows
  PickleRef root_ = nullptr;
};

// Reads pickle protocols 2 to 5 (the opcodes a state dict uses). `source` names the file in every error, e.g.
// "model.bin (archive/data.pkl)". Throws Error for anything refused, malformed, truncated or over `limits`.
PickleDocument read_restricted_pickle(std::span<const std::byte> bytes, const std::string& source,
                                      const PickleLimits& limits = {});

}  // namespace halfserve
