#include "halfserve/import/tf_checkpoint.h"

#include <leveldb/env.h>
#include <leveldb/iterator.h>
#include <leveldb/options.h>
#include <leveldb/status.h>
#include <leveldb/table.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <utility>

#include "halfserve/util/error.h"
#include "import/tf_tensor_proto.h"
#include "halfserve/util/mapped_file.h"
#include "import/crc32c.h"
#include "tensorflow/core/protobuf/tensor_bundle.pb.h"

namespace halfserve {

namespace {

namespace fs = std::filesystem;

// LevelDB table layout (TensorFlow writes its .index with a fork of LevelDB's table builder).
constexpr uint64_t kTableMagic = 0xdb4775248b80fb57ull;
constexpr size_t kFooterSize = 48;
constexpr size_t kBlockTrailerSize = 5;  // compression type byte + masked CRC32C

// The tensor bundle format version halfserve understands (tensorflow/core/util/tensor_bundle: kTensorBundleVersion).
constexpr int32_t kBundleVersion = 1;
constexpr int kMaxRank = 32;
// Header and entry records are a few dozen bytes; anything near protobuf's 2 GiB limit is corruption.
constexpr size_t kMaxRecordBytes = 1 << 20;
constexpr size_t kMaxStateFileBytes = 1 << 20;
constexpr size_t kMaxListedCandidates = 5;

[[noreturn]] void fail_index(const std::string& index_path, const std::string& problem) {
  throw Error(index_path + ": invalid TensorFlow checkpoint index: " + problem);
}

std::string quoted(const std::string& name) { return "'" + name + "'"; }

// ---- Finding the checkpoint prefix ------------------------------------------------------------------------------

bool regular_file_exists(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);
}

bool folder_exists(const fs::path& path) {
  std::error_code error;
  return fs::is_directory(path, error);
}

bool has_index(const std::string& prefix) { return regular_file_exists(prefix + ".index"); }

std::string trim(std::string_view text) {
  const auto begin = text.find_first_not_of(" \t\r");
  if (begin == std::string_view::npos) return {};
  const auto end = text.find_last_not_of(" \t\r");
  return std::string(text.substr(begin, end - begin + 1));
}

// A text-format string literal, as TensorFlow writes it in the `checkpoint` state file.
std::optional<std::string> unquote(const std::string& literal) {
  if (literal.size() < 2 || literal.front() != literal.back() || (literal.front() != '"' && literal.front() != '\''))
    return std::nullopt;
  std::string value;
  for (size_t i = 1; i + 1 < literal.size(); ++i) {
    char c = literal[i];
    if (c == '\\' && i + 2 < literal.size()) {
      c = literal[++i];
      if (c == 'n') c = '\n';
      if (c == 't') c = '\t';
    }
    value.push_back(c);
  }
  return value;
}

// The `model_checkpoint_path` a tf.train.CheckpointManager / Saver state file names, resolved against its folder.
// Training machines write absolute paths that rarely survive a copy, so a missing absolute path falls back to
// the same file name beside the state file, as TensorFlow's own latest_checkpoint does.
std::string prefix_from_state_file(const fs::path& state_file) {
  const std::string text = read_file_bounded(state_file.string(), kMaxStateFileBytes);
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t line_end = std::min(rest.find('\n'), rest.size());
    const std::string line = trim(rest.substr(0, line_end));
    rest.remove_prefix(std::min(line_end + 1, rest.size()));
    constexpr std::string_view kKey = "model_checkpoint_path:";
    if (!line.starts_with(kKey)) continue;
    const auto named = unquote(trim(std::string_view(line).substr(kKey.size())));
    if (!named || named->empty()) throw Error(state_file.string() + ": model_checkpoint_path is not a quoted path");
    const fs::path named_path(*named);
    const fs::path beside = state_file.parent_path() / named_path.filename();
    const fs::path candidate = named_path.is_absolute() ? named_path : state_file.parent_path() / named_path;
    if (has_index(candidate.string())) return candidate.string();
    if (has_index(beside.string())) return beside.string();
    throw Error(state_file.string() + ": names checkpoint '" + *named + "' but " + candidate.string() +
                ".index does not exist");
  }
  throw Error(state_file.string() + ": has no model_checkpoint_path line");
}

std::string prefix_in_folder(const fs::path& folder) {
  const fs::path state_file = folder / "checkpoint";
  if (regular_file_exists(state_file)) return prefix_from_state_file(state_file);
  std::vector<std::string> candidates;
  std::error_code error;
  for (const auto& item : fs::directory_iterator(folder, error)) {
    const fs::path& path = item.path();
    if (path.extension() == ".index" && regular_file_exists(path)) candidates.push_back(path.string());
  }
  if (error) throw Error(folder.string() + ": cannot list folder: " + error.message());
  if (candidates.empty())
    throw Error(folder.string() + ": no TensorFlow checkpoint here (no *.index file and no 'checkpoint' state file)");
  if (candidates.size() > 1) {
    std::sort(candidates.begin(), candidates.end());
    std::string listed;
    for (size_t i = 0; i < std::min(candidates.size(), kMaxListedCandidates); ++i)
      listed += (i ? ", " : "") + fs::path(candidates[i]).filename().string();
    if (candidates.size() > kMaxListedCandidates) listed += ", ...";
    throw Error(folder.string() + ": holds " + std::to_string(candidates.size()) + " checkpoints (" + listed +
                "); name one by its prefix");
  }
  const std::string& index = candidates.front();
  return index.substr(0, index.size() - std::string_view(".index").size());
}

// `x.data-00000-of-00001` -> `x`: users often pick the big file when asked for "the checkpoint".
std::optional<std::string> prefix_of_data_shard(const std::string& path) {
  constexpr std::string_view kPattern = ".data-00000-of-00000";
  if (path.size() <= kPattern.size()) return std::nullopt;
  const std::string_view tail = std::string_view(path).substr(path.size() - kPattern.size());
  for (size_t i = 0; i < kPattern.size(); ++i) {
    const bool digit_expected = kPattern[i] == '0';
    const bool is_digit = tail[i] >= '0' && tail[i] <= '9';
    if (digit_expected ? !is_digit : tail[i] != kPattern[i]) return std::nullopt;
  }
  return path.substr(0, path.size() - kPattern.size());
}

std::string resolve_prefix(const std::string& path) {
  if (path.ends_with(".index") && regular_file_exists(path)) return path.substr(0, path.size() - 6);
  if (folder_exists(path)) return prefix_in_folder(path);
  if (has_index(path)) return path;
  if (const auto prefix = prefix_of_data_shard(path); prefix && has_index(*prefix)) return *prefix;
  throw Error(path + ": no TensorFlow checkpoint: neither " + path + ".index nor a folder of that name exists");
}

// ---- Reading the index table ------------------------------------------------------------------------------------

// LevelDB reads the table through this, straight from the memory map (no copies for uncompressed blocks).
class MappedTableFile final : public leveldb::RandomAccessFile {
 public:
  explicit MappedTableFile(std::span<const std::byte> bytes) : bytes_(bytes) {}

  leveldb::Status Read(uint64_t offset, size_t size, leveldb::Slice* result, char* scratch) const override {
    // Every LevelDB read is a block plus its trailer or the footer; anything shorter means the block size in a
    // corrupt handle wrapped around when LevelDB added the trailer size to it.
    if (size < kBlockTrailerSize) return leveldb::Status::Corruption("block size out of range");
    if (offset > bytes_.size() || size > bytes_.size() - offset)
      return leveldb::Status::Corruption("block at offset " + std::to_string(offset) + " runs past the end of the " +
                                         std::to_string(bytes_.size()) + "-byte file");
    *result = leveldb::Slice(reinterpret_cast<const char*>(bytes_.data() + offset), size);
    return leveldb::Status::OK();
  }

 private:
  std::span<const std::byte> bytes_;
};

std::optional<uint64_t> read_varint64(std::span<const std::byte>& bytes) {
  uint64_t value = 0;
  for (int shift = 0; shift <= 63 && !bytes.empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(bytes.front());
    bytes = bytes.subspan(1);
    value |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80u) == 0) return value;
  }
  return std::nullopt;
}

// LevelDB trusts the footer's block handles (they carry no checksum) and allocates their size before reading,
// so a corrupt footer is caught here rather than inside LevelDB.
void check_footer(const std::string& index_path, std::span<const std::byte> file) {
  if (file.size() < kFooterSize)
    fail_index(index_path, "file is " + std::to_string(file.size()) + " bytes, shorter than the " +
                               std::to_string(kFooterSize) + "-byte table footer (truncated?)");
  auto footer = file.subspan(file.size() - kFooterSize);
  uint64_t magic = 0;
  for (int i = 7; i >= 0; --i) magic = (magic << 8) | static_cast<uint8_t>(footer[kFooterSize - 8 + i]);
  if (magic != kTableMagic)
    fail_index(index_path, "does not end in the table magic number (truncated, or not a checkpoint index)");
  for (const char* what : {"metaindex", "index"}) {
    const auto offset = read_varint64(footer);
    const auto size = offset ? read_varint64(footer) : std::nullopt;
    if (!size) fail_index(index_path, std::string("footer's ") + what + " block handle is malformed");
    const uint64_t limit = file.size() - kFooterSize;
    if (*offset > limit || *size > limit - *offset || kBlockTrailerSize > limit - *offset - *size)
      fail_index(index_path, std::string("footer's ") + what + " block runs past the end of the file (truncated?)");
  }
}

using TableEntries = std::vector<std::pair<std::string, std::string>>;

TableEntries read_table_entries(const std::string& index_path, std::span<const std::byte> file) {
  check_footer(index_path, file);
  MappedTableFile table_file(file);
  leveldb::Options options;
  options.paranoid_checks = true;  // also verifies the index block's checksum when opening
  leveldb::ReadOptions read_options;
  read_options.verify_checksums = true;
  read_options.fill_cache = false;
  TableEntries entries;
  try {
    leveldb::Table* raw_table = nullptr;
    const leveldb::Status opened = leveldb::Table::Open(options, &table_file, file.size(), &raw_table);
    if (!opened.ok()) fail_index(index_path, "corrupt table: " + opened.ToString());
    const std::unique_ptr<leveldb::Table> table(raw_table);
    const std::unique_ptr<leveldb::Iterator> cursor(table->NewIterator(read_options));
    for (cursor->SeekToFirst(); cursor->Valid(); cursor->Next())
      entries.emplace_back(cursor->key().ToString(), cursor->value().ToString());
    if (!cursor->status().ok()) fail_index(index_path, "corrupt table: " + cursor->status().ToString());
  } catch (const std::bad_alloc&) {
    fail_index(index_path, "a table block claims a size too large to read (corrupt)");
  }
  return entries;
}

// ---- Interpreting the bundle entries ----------------------------------------------------------------------------

struct BundleEntry {
  SourceTensorInfo info;
  int32_t shard_id = 0;
  int64_t offset = 0;
  int64_t size = 0;
  uint32_t masked_crc32c = 0;
};

struct BundleIndex {
  int32_t num_shards = 1;
  std::vector<BundleEntry> entries;
  std::map<std::string, std::string> skipped;  // tensor name -> why
  std::vector<std::string> notes;
};

void parse_header(const std::string& index_path, const TableEntries& table, BundleIndex& index) {
  if (table.empty() || !table.front().first.empty())
    fail_index(index_path, "has no bundle header (the entry with the empty key)");
  tensorflow::BundleHeaderProto header;
  const std::string& bytes = table.front().second;
  if (bytes.size() > kMaxRecordBytes || !header.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail_index(index_path, "bundle header is not a valid BundleHeaderProto");
  if (header.num_shards() < 1)
    fail_index(index_path, "bundle header says " + std::to_string(header.num_shards()) + " data shards");
  if (header.endianness() != tensorflow::BundleHeaderProto::LITTLE)
    fail_index(index_path, "checkpoint was written big-endian; halfserve reads little-endian checkpoints only");
  const auto& version = header.version();
  const auto& bad = version.bad_consumers();
  if (version.min_consumer() > kBundleVersion || std::find(bad.begin(), bad.end(), kBundleVersion) != bad.end())
    fail_index(index_path, "bundle format version (min_consumer " + std::to_string(version.min_consumer()) +
                               ") is newer than the version " + std::to_string(kBundleVersion) + " halfserve reads");
  index.num_shards = header.num_shards();
}

Shape parse_shape(const std::string& index_path, const std::string& name, const tensorflow::TensorShapeProto& proto) {
  const std::string where = "tensor " + quoted(name);
  if (proto.unknown_rank()) fail_index(index_path, where + " has an unknown rank");
  if (proto.dim_size() > kMaxRank)
    fail_index(index_path, where + " has " + std::to_string(proto.dim_size()) + " dimensions");
  Shape shape;
  // Keeps numel * the widest dtype size within int64 so read() can compute byte counts without overflow.
  constexpr uint64_t kMaxNumel = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 16;
  uint64_t numel = 1;
  for (const auto& dim : proto.dim()) {
    if (dim.size() < 0) fail_index(index_path, where + " has a negative dimension " + std::to_string(dim.size()));
    shape.push_back(dim.size());
    const auto size = static_cast<uint64_t>(dim.size());
    if (size != 0 && numel > kMaxNumel / size)
      fail_index(index_path, where + " shape " + shape_string(shape) + " is too large");
    numel *= size;
  }
  return shape;
}

void add_entry(const std::string& index_path, const std::string& name, const std::string& bytes, BundleIndex& index) {
  tensorflow::BundleEntryProto proto;
  if (bytes.size() > kMaxRecordBytes || !proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail_index(index_path, "entry for tensor " + quoted(name) + " is not a valid BundleEntryProto");
  if (proto.slices_size() > 0) {
    index.skipped[name] = "partitioned into " + std::to_string(proto.slices_size()) +
                          " slices (saved with a variable partitioner); halfserve reads whole tensors only";
    return;
  }
  const auto dtype = dtype_from_tf(proto.dtype());
  if (!dtype) {
    index.skipped[name] = proto.dtype() == tensorflow::DT_STRING
                              ? "DT_STRING tensor is not numeric"
                              : tf_dtype_name(proto.dtype()) + " tensors are not supported";
    return;
  }
  BundleEntry entry;
  entry.info = {name, *dtype, parse_shape(index_path, name, proto.shape())};
  entry.shard_id = proto.shard_id();
  entry.offset = proto.offset();
  entry.size = proto.size();
  entry.masked_crc32c = proto.crc32c();
  index.entries.push_back(std::move(entry));
}

BundleIndex read_bundle_index(const std::string& index_path) {
  const MappedFile file(index_path);
  const TableEntries table = read_table_entries(index_path, file.bytes());
  BundleIndex index;
  parse_header(index_path, table, index);
  size_t slice_records = 0;
  for (size_t i = 1; i < table.size(); ++i) {
    const auto& [name, value] = table[i];
    // Slices of partitioned tensors are keyed by an ordered-code encoding that starts with a zero byte.
    if (name.empty() || name.front() == '\0') {
      ++slice_records;
      continue;
    }
    add_entry(index_path, name, value, index);
  }
  for (const auto& [name, reason] : index.skipped) index.notes.push_back(name + ": skipped, " + reason);
  if (slice_records > 0)
    index.notes.push_back(std::to_string(slice_records) + " slice records of partitioned tensors skipped");
  return index;
}

// ---- The source -------------------------------------------------------------------------------------------------

std::string shard_path(const std::string& prefix, int32_t shard_id, int32_t num_shards) {
  char suffix[48];
  std::snprintf(suffix, sizeof suffix, ".data-%05d-of-%05d", shard_id, num_shards);
  return prefix + suffix;
}

class TfCheckpoint final : public TensorSource {
 public:
  TfCheckpoint(std::string prefix, BundleIndex index)
      : prefix_(std::move(prefix)), index_path_(prefix_ + ".index"), num_shards_(index.num_shards),
        skipped_(std::move(index.skipped)), notes_(std::move(index.notes)) {
    for (auto& entry : index.entries) {
      tensors_.push_back(entry.info);
      entries_.emplace(entry.info.name, std::move(entry));
    }
  }

  std::string format() const override { return "tf-checkpoint"; }
  const std::vector<SourceTensorInfo>& tensors() const override { return tensors_; }
  std::vector<std::string> notes() const override { return notes_; }

  LoadedTensor read(const std::string& name) override {
    const BundleEntry& entry = find(name);
    const std::string tensor = "tensor " + quoted(name);
    const SourceTensorInfo& info = entry.info;
    const int64_t expected_size = shape_numel(info.shape) * static_cast<int64_t>(dtype_size(info.dtype));
    if (entry.size != expected_size)
      fail_index(index_path_, tensor + " is recorded as " + std::to_string(entry.size) + " bytes but " +
                                  std::string(dtype_name(info.dtype)) + " " + shape_string(info.shape) + " needs " +
                                  std::to_string(expected_size));
    if (entry.shard_id < 0 || entry.shard_id >= num_shards_)
      fail_index(index_path_, tensor + " is in data shard " + std::to_string(entry.shard_id) + " of " +
                                  std::to_string(num_shards_));
    if (entry.offset < 0) fail_index(index_path_, tensor + " has a negative offset");

    const auto file = shard(entry.shard_id, name);
    const auto bytes = file->bytes();
    const auto begin = static_cast<uint64_t>(entry.offset);
    const auto size = static_cast<uint64_t>(entry.size);
    if (begin > bytes.size() || size > bytes.size() - begin)
      throw Error(file->path() + ": " + tensor + " needs " + std::to_string(size) + " bytes at offset " +
                  std::to_string(begin) + " but the data shard has only " + std::to_string(bytes.size()) +
                  " bytes (truncated?)");
    const auto data = bytes.subspan(begin, size);
    const uint32_t actual_crc = crc32c::mask(crc32c::value(data.data(), data.size()));
    if (actual_crc != entry.masked_crc32c)
      throw Error("checksum mismatch in " + tensor + " (file " + file->path() + "): the data shard is corrupt");
    return view_or_aligned_copy(info, data, file);
  }

 private:
  const BundleEntry& find(const std::string& name) const {
    const auto found = entries_.find(name);
    if (found != entries_.end()) return found->second;
    const auto skipped = skipped_.find(name);
    if (skipped != skipped_.end())
      throw Error(index_path_ + ": tensor " + quoted(name) + " cannot be read: " + skipped->second);
    throw Error(index_path_ + ": no tensor " + quoted(name) + " in this checkpoint");
  }

  std::shared_ptr<const MappedFile> shard(int32_t shard_id, const std::string& tensor_name) {
    const std::lock_guard lock(shards_mutex_);
    auto& mapped = shards_[shard_id];
    if (mapped) return mapped;
    const std::string path = shard_path(prefix_, shard_id, num_shards_);
    if (!regular_file_exists(path))
      throw Error(path + ": data shard " + std::to_string(shard_id) + " of " + std::to_string(num_shards_) +
                  " is missing (needed for tensor " + quoted(tensor_name) + ")");
    try {
      mapped = std::make_shared<const MappedFile>(path);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (needed for tensor " + quoted(tensor_name) + ")");
    }
    return mapped;
  }

  // TensorFlow packs tensors back to back, so an offset need not suit the element type; consumers may use the
  // view as a typed array, so misaligned tensors are copied into an aligned buffer.
  static LoadedTensor view_or_aligned_copy(const SourceTensorInfo& info, std::span<const std::byte> data,
                                           std::shared_ptr<const MappedFile> file) {
    const auto address = reinterpret_cast<uintptr_t>(data.data());
    if (address % dtype_size(info.dtype) == 0)
      return {TensorView{info.dtype, info.shape, data}, std::move(file)};
    auto copy = std::make_shared<const std::vector<std::byte>>(data.begin(), data.end());
    return {TensorView{info.dtype, info.shape, std::span<const std::byte>(copy->data(), copy->size())}, copy};
  }

  std::string prefix_;
  std::string index_path_;
  int32_t num_shards_;
  std::vector<SourceTensorInfo> tensors_;
  std::map<std::string, BundleEntry> entries_;
  std::map<std::string, std::string> skipped_;
  std::vector<std::string> notes_;
  std::mutex shards_mutex_;
  std::map<int32_t, std::shared_ptr<const MappedFile>> shards_;
};

bool ends_with_table_magic(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  const std::streamoff size = in.tellg();
  if (size < static_cast<std::streamoff>(kFooterSize)) return false;
  unsigned char tail[8];
  in.seekg(size - 8);
  if (!in.read(reinterpret_cast<char*>(tail), sizeof tail)) return false;
  uint64_t magic = 0;
  for (int i = 7; i >= 0; --i) magic = (magic << 8) | tail[i];
  return magic == kTableMagic;
}

}  // namespace

std::unique_ptr<TensorSource> open_tf_checkpoint(const std::string& path) {
  std::string prefix = resolve_prefix(path);
  BundleIndex index = read_bundle_index(prefix + ".index");
  return std::make_unique<TfCheckpoint>(std::move(prefix), std::move(index));
}

bool is_tf_checkpoint(const std::string& path) {
  try {
    return ends_with_table_magic(resolve_prefix(path) + ".index");
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace halfserve
