#include "halfserve/import/torch_checkpoint.h"

#include <zip.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <optional>

#include "halfserve/util/error.h"
#include "import/restricted_pickle.h"

namespace halfserve {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxDims = 8;
// Largest storage accepted: beyond any BERT, and small enough that element counts times sizes cannot overflow.
constexpr uint64_t kMaxStorageBytes = 1ull << 40;
// Deflate cannot compress better than about 1032:1, so a larger declared size is a lie (a zip bomb's, say).
constexpr uint64_t kMaxDeflateRatio = 1100;
constexpr uint64_t kMaxByteorderBytes = 16;
constexpr size_t kMaxNotes = 32;
// Where training scripts put the state dict inside a bigger checkpoint dict.
constexpr const char* kWrapperKeys[] = {"state_dict", "model", "model_state_dict", "module"};

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw Error(path + ": invalid torch checkpoint: " + problem);
}

std::string quoted(const std::string& text) { return "'" + text + "'"; }

// ---- zip access ----

// Read-only archives are discarded, never closed: zip_close would try to write changes back.
struct ZipDiscard {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
using ZipArchive = std::unique_ptr<zip_t, ZipDiscard>;

std::string zip_error_text(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string text = zip_error_strerror(&error);
  zip_error_fini(&error);
  return text;
}

bool starts_with_zip_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, sizeof magic);
  return in.gcount() == sizeof magic && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

// torch < 1.6 wrote a bare pickle stream (protocol 2: 0x80 0x02) instead of a zip.
bool starts_with_pickle(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[2] = {};
  in.read(head, sizeof head);
  return in.gcount() == sizeof head && static_cast<unsigned char>(head[0]) == 0x80 && head[1] == 2;
}

ZipArchive open_zip(const std::string& path) {
  int code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (archive == nullptr) throw Error(path + ": not a readable zip archive: " + zip_error_text(code));
  return ZipArchive(archive);
}

// The `<root>` of every `<root>/data.pkl` entry (torch writes exactly one).
std::vector<std::string> pickle_roots(zip_t* archive) {
  constexpr std::string_view kSuffix = "/data.pkl";
  std::vector<std::string> roots;
  const zip_int64_t count = zip_get_num_entries(archive, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    const char* raw_name = zip_get_name(archive, static_cast<zip_uint64_t>(i), 0);
    if (raw_name == nullptr) continue;
    const std::string_view name(raw_name);
    if (name.size() <= kSuffix.size() || !name.ends_with(kSuffix)) continue;
    const std::string_view root = name.substr(0, name.size() - kSuffix.size());
    if (root.find('/') == std::string_view::npos) roots.emplace_back(root);
  }
  return roots;
}

// One archive entry, its sizes checked against the archive before anything is allocated for it.
struct ZipEntry {
  zip_uint64_t index = 0;
  std::string name;
  uint64_t size = 0;
};

std::optional<ZipEntry> find_entry(zip_t* archive, const std::string& path, const std::string& name,
                                   uint64_t file_size) {
  const zip_int64_t index = zip_name_locate(archive, name.c_str(), 0);
  if (index < 0) return std::nullopt;
  zip_stat_t stat;
  zip_stat_init(&stat);
  if (zip_stat_index(archive, static_cast<zip_uint64_t>(index), 0, &stat) != 0)
    fail(path, "cannot read the zip entry " + quoted(name) + ": " + zip_strerror(archive));
  constexpr zip_uint64_t kNeeded = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD | ZIP_STAT_ENCRYPTION_METHOD;
  if ((stat.valid & kNeeded) != kNeeded) fail(path, "zip entry " + quoted(name) + " does not record its sizes");
  if (stat.encryption_method != ZIP_EM_NONE) fail(path, "zip entry " + quoted(name) + " is encrypted");
  const bool stored = stat.comp_method == ZIP_CM_STORE;
  const bool plausible = stat.comp_size <= file_size &&
                         (stored ? stat.size == stat.comp_size : stat.size <= stat.comp_size * kMaxDeflateRatio + 1024);
  if (!plausible)
    fail(path, "zip entry " + quoted(name) + " claims " + std::to_string(stat.size) + " bytes (" +
                   std::to_string(stat.comp_size) + " compressed) in a " + std::to_string(file_size) +
                   "-byte file");
  return ZipEntry{static_cast<zip_uint64_t>(index), name, stat.size};
}

// Reads a whole entry into `destination` (entry.size bytes). libzip checks the CRC once the data is read to its
// end, so reading one byte past the declared size both proves there is no more and triggers that check.
void read_entry(zip_t* archive, const std::string& path, const ZipEntry& entry, std::byte* destination) {
  zip_file_t* file = zip_fopen_index(archive, entry.index, 0);
  if (file == nullptr) fail(path, "cannot open the zip entry " + quoted(entry.name) + ": " + zip_strerror(archive));
  std::string problem;
  uint64_t done = 0;
  while (done < entry.size && problem.empty()) {
    const zip_int64_t got = zip_fread(file, destination + done, entry.size - done);
    if (got < 0) problem = zip_file_strerror(file);
    else if (got == 0) problem = "ends after " + std::to_string(done) + " of " + std::to_string(entry.size) + " bytes";
    else done += static_cast<uint64_t>(got);
  }
  if (problem.empty()) {
    std::byte extra;
    const zip_int64_t got = zip_fread(file, &extra, 1);
    if (got < 0) problem = zip_file_strerror(file);
    else if (got > 0) problem = "holds more than its declared " + std::to_string(entry.size) + " bytes";
  }
  zip_fclose(file);
  if (!problem.empty()) fail(path, "zip entry " + quoted(entry.name) + ": " + problem);
}

std::string read_small_entry(zip_t* archive, const std::string& path, const ZipEntry& entry, uint64_t max_bytes) {
  if (entry.size > max_bytes)
    fail(path, "zip entry " + quoted(entry.name) + " is " + std::to_string(entry.size) + " bytes, over the limit of " +
                   std::to_string(max_bytes));
  std::string text(entry.size, '\0');
  read_entry(archive, path, entry, reinterpret_cast<std::byte*>(text.data()));
  return text;
}

// ---- the state dict inside the pickle ----

bool holds_tensors(const PickleObject& dict) {
  for (const auto& [key, value] : dict.entries)
    if (value->kind == PickleKind::tensor) return true;
  return false;
}

// The dict whose values are the tensors: the top level, or one level down in a training checkpoint.
const PickleObject& find_state_dict(const PickleObject& root, const std::string& path, std::vector<std::string>& notes) {
  if (root.kind != PickleKind::dict)
    fail(path, "the pickle holds " + std::string(pickle_kind_name(root.kind)) + ", not a dict of tensors");
  if (holds_tensors(root)) return root;
  for (const char* wrapper : kWrapperKeys) {
    for (const auto& [key, value] : root.entries) {
      if (key->kind != PickleKind::string || key->text != wrapper) continue;
      if (value->kind != PickleKind::dict || !holds_tensors(*value)) continue;
      notes.push_back(std::string("tensors read from the top-level '") + wrapper + "' entry; " +
                      std::to_string(root.entries.size() - 1) + " other top-level entries skipped");
      return *value;
    }
  }
  std::string keys;
  for (size_t i = 0; i < root.entries.size() && i < 8; ++i)
    if (root.entries[i].first->kind == PickleKind::string) keys += (keys.empty() ? "" : ", ") + root.entries[i].first->text;
  fail(path, "the top-level dict holds no tensors" + (keys.empty() ? std::string() : " (keys: " + keys + ")"));
}

// ---- the TensorSource ----

struct StorageInfo {
  DType dtype;
  int64_t numel;
  std::string first_tensor;  // for conflict messages
};

// A storage may be larger than the tensor read from it (torch saves a slice's whole base), but not by more than this:
// a file that declares a storage of a gigabyte for a tensor of a few bytes is refused before the gigabyte is
// inflated.
constexpr uint64_t kMaxUnusedStorageBytes = 64ull << 20;

struct TensorLocation {
  size_t info_index = 0;  // into tensors()
  std::string storage_key;
  uint64_t byte_offset = 0;
  uint64_t byte_size = 0;
};

class TorchCheckpoint final : public TensorSource {
 public:
  explicit TorchCheckpoint(const std::string& path) : path_(path) {
    std::error_code error;
    if (!fs::is_regular_file(path, error)) throw Error(path + ": no such file");
    if (!starts_with_zip_magic(path)) {
      if (starts_with_pickle(path))
        throw Error(path + ": a torch checkpoint in the legacy (torch < 1.6) pickle format, which is not supported; "
                           "re-save it with torch >= 1.6 or convert it to safetensors");
      fail(path, "not a zip archive (torch >= 1.6 saves zip files)");
    }
    file_size_ = fs::file_size(path, error);
    if (error) throw Error(path + ": cannot read: " + error.message());
    archive_ = open_zip(path);
    find_root();
    check_byteorder();
    index_tensors(read_pickle());
  }

  std::string format() const override { return "torch"; }
  const std::vector<SourceTensorInfo>& tensors() const override { return infos_; }
  std::vector<std::string> notes() const override { return notes_; }

  LoadedTensor read(const std::string& name) override {
    const auto found = locations_.find(name);
    if (found == locations_.end()) throw Error(path_ + ": no tensor named " + quoted(name));
    const TensorLocation& location = found->second;
    std::shared_ptr<const std::byte[]> storage = load_storage(location.storage_key, name);
    const SourceTensorInfo& info = infos_[location.info_index];
    TensorView view{info.dtype, info.shape,
                    std::span<const std::byte>(storage.get() + location.byte_offset, location.byte_size)};
    return LoadedTensor{std::move(view), std::move(storage)};
  }

 private:
  void find_root() {
    const auto roots = pickle_roots(archive_.get());
    if (roots.empty()) fail(path_, "the zip archive has no <root>/data.pkl entry");
    if (roots.size() > 1) fail(path_, "the zip archive has " + std::to_string(roots.size()) + " <root>/data.pkl entries");
    root_ = roots.front();
  }

  // torch >= 2.1 records the byte order of the storages; older versions only ever wrote little-endian ones.
  void check_byteorder() {
    const auto entry = find_entry(archive_.get(), path_, root_ + "/byteorder", file_size_);
    if (!entry) return;
    const std::string order = read_small_entry(archive_.get(), path_, *entry, kMaxByteorderBytes);
    if (order != "little") fail(path_, "storages are '" + order + "'-endian; only little-endian ones are supported");
  }

  PickleDocument read_pickle() {
    const std::string name = root_ + "/data.pkl";
    const auto entry = find_entry(archive_.get(), path_, name, file_size_);
    if (!entry) fail(path_, "cannot find " + quoted(name));
    const std::string bytes = read_small_entry(archive_.get(), path_, *entry, kMaxTorchPickleBytes);
    return read_restricted_pickle(std::as_bytes(std::span(bytes)), path_ + " (" + name + ")");
  }

  void index_tensors(const PickleDocument& document) {
    const PickleObject& state_dict = find_state_dict(document.root(), path_, notes_);
    size_t skipped = 0;
    auto skip = [&](const std::string& why) {
      if (++skipped <= kMaxNotes) notes_.push_back(why);
    };
    for (const auto& [key, value] : state_dict.entries) {
      if (key->kind != PickleKind::string) {
        skip(std::string("skipped an entry keyed by ") + std::string(pickle_kind_name(key->kind)));
        continue;
      }
      if (value->kind != PickleKind::tensor) {
        skip("skipped " + quoted(key->text) + ": " + std::string(pickle_kind_name(value->kind)) + ", not a tensor");
        continue;
      }
      add_tensor(key->text, *value->tensor);
    }
    if (skipped > kMaxNotes) notes_.push_back("... and " + std::to_string(skipped - kMaxNotes) + " more entries skipped");
  }

  void add_tensor(const std::string& name, const PickleTensor& tensor) {
    const std::string where = "tensor " + quoted(name);
    if (locations_.count(name) != 0) fail(path_, where + " appears twice");
    const size_t element_size = dtype_size(tensor.storage.dtype);
    const uint64_t numel = checked_numel(where, tensor.size, element_size);
    check_contiguous(where, tensor.size, tensor.stride);
    check_storage(where, name, tensor.storage);
    const auto storage_numel = static_cast<uint64_t>(tensor.storage.numel);
    if (tensor.storage_offset < 0 || static_cast<uint64_t>(tensor.storage_offset) > storage_numel ||
        numel > storage_numel - static_cast<uint64_t>(tensor.storage_offset))
      fail(path_, where + " of " + std::to_string(numel) + " elements at offset " +
                      std::to_string(tensor.storage_offset) + " runs past its storage of " +
                      std::to_string(storage_numel) + " elements");
    locations_[name] = TensorLocation{infos_.size(), tensor.storage.key,
                                      static_cast<uint64_t>(tensor.storage_offset) * element_size, numel * element_size};
    infos_.push_back(SourceTensorInfo{name, tensor.storage.dtype, tensor.size});
  }

  uint64_t checked_numel(const std::string& where, const Shape& shape, size_t element_size) const {
    if (shape.size() > kMaxDims) fail(path_, where + " has " + std::to_string(shape.size()) + " dimensions");
    uint64_t numel = 1;
    for (const int64_t dim : shape) {
      if (dim < 0) fail(path_, where + " has a negative dimension in " + shape_string(shape));
      if (dim != 0 && numel > kMaxStorageBytes / element_size / static_cast<uint64_t>(dim))
        fail(path_, where + " shape " + shape_string(shape) + " is too large");
      numel *= static_cast<uint64_t>(dim);
    }
    return numel;
  }

  // Row-major contiguous as torch's is_contiguous() sees it: strides of size-1 dimensions do not matter, and an
  // empty tensor is contiguous whatever its strides.
  void check_contiguous(const std::string& where, const Shape& shape, const std::vector<int64_t>& stride) const {
    if (stride.size() != shape.size())
      fail(path_, where + " has " + std::to_string(stride.size()) + " strides for " + std::to_string(shape.size()) +
                      " dimensions");
    if (shape_numel(shape) == 0) return;
    int64_t expected = 1;
    for (size_t d = shape.size(); d-- > 0;) {
      if (shape[d] != 1 && stride[d] != expected)
        fail(path_, where + " has strides " + shape_string(stride) + " for shape " + shape_string(shape) +
                        ": not contiguous row-major, which is not supported (save it with .contiguous())");
      expected *= shape[d];
    }
  }

  // Tensors viewing one storage must agree on what it is; torch itself refuses to save views of differing types.
  void check_storage(const std::string& where, const std::string& name, const PickleStorage& storage) {
    if (storage.key.empty()) fail(path_, where + " names an empty storage key");
    if (static_cast<uint64_t>(storage.numel) > kMaxStorageBytes / dtype_size(storage.dtype))
      fail(path_, where + " has a storage of " + std::to_string(storage.numel) + " elements, over the limit");
    const auto [it, inserted] = storages_.try_emplace(storage.key, StorageInfo{storage.dtype, storage.numel, name});
    if (inserted) return;
    const StorageInfo& first = it->second;
    if (first.dtype != storage.dtype || first.numel != storage.numel)
      fail(path_, where + " views storage " + quoted(storage.key) + " as " + std::string(dtype_name(storage.dtype)) +
                      " of " + std::to_string(storage.numel) + " elements but tensor " + quoted(first.first_tensor) +
                      " views it as " + std::string(dtype_name(first.dtype)) + " of " + std::to_string(first.numel));
  }

  // Loads a storage once while any tensor read from it is alive; later reads of its other tensors share it.
  std::shared_ptr<const std::byte[]> load_storage(const std::string& key, const std::string& tensor_name) {
    if (auto cached = loaded_storages_[key].lock()) return cached;
    const std::string where = "tensor " + quoted(tensor_name);
    const StorageInfo& info = storages_.at(key);
    const uint64_t needed = static_cast<uint64_t>(info.numel) * dtype_size(info.dtype);
    // Measured against the tensor being read, not every tensor naming the storage: a decoy tensor spanning a huge
    // storage (which the importer would never read) cannot vouch for it.
    const TensorLocation& location = locations_.at(tensor_name);
    const uint64_t used = location.byte_offset + location.byte_size;
    if (needed > used + kMaxUnusedStorageBytes)
      fail(path_, where + ": its storage " + quoted(key) + " holds " + std::to_string(needed) + " bytes but the tensor "
                      "uses only " + std::to_string(used) + " (at most " + std::to_string(kMaxUnusedStorageBytes) +
                      " unused bytes are read)");
    const std::string entry_name = root_ + "/data/" + key;
    const auto entry = find_entry(archive_.get(), path_, entry_name, file_size_);
    if (!entry) fail(path_, where + ": its storage entry " + quoted(entry_name) + " is missing");
    if (entry->size != needed)
      fail(path_, where + ": storage entry " + quoted(entry_name) + " holds " + std::to_string(entry->size) +
                      " bytes but its " + std::string(dtype_name(info.dtype)) + " storage of " +
                      std::to_string(info.numel) + " elements needs " + std::to_string(needed) +
                      (entry->size < needed ? " (truncated?)" : ""));
    std::shared_ptr<std::byte[]> bytes;
    try {
      bytes.reset(new std::byte[std::max<uint64_t>(needed, 1)]);  // uninitialised: read_entry fills it
    } catch (const std::bad_alloc&) {
      fail(path_, where + ": cannot allocate " + std::to_string(needed) + " bytes for its storage");
    }
    try {
      read_entry(archive_.get(), path_, *entry, bytes.get());
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (reading " + where + ")");
    }
    loaded_storages_[key] = bytes;
    return bytes;
  }

  std::string path_;
  uint64_t file_size_ = 0;
  ZipArchive archive_;
  std::string root_;
  std::vector<SourceTensorInfo> infos_;
  std::map<std::string, TensorLocation> locations_;
  std::map<std::string, StorageInfo> storages_;
  std::map<std::string, std::weak_ptr<const std::byte[]>> loaded_storages_;
  std::vector<std::string> notes_;
};

}  // namespace

std::unique_ptr<TensorSource> open_torch_checkpoint(const std::string& path) {
  return std::make_unique<TorchCheckpoint>(path);
}

bool is_torch_checkpoint(const std::string& path) {
  try {
    std::error_code error;
    if (!fs::is_regular_file(path, error) || !starts_with_zip_magic(path)) return false;
    int code = 0;
    ZipArchive archive(zip_open(path.c_str(), ZIP_RDONLY, &code));
    return archive != nullptr && !pickle_roots(archive.get()).empty();
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace halfserve
