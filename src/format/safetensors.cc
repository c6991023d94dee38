#include "halfserve/format/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "halfserve/util/error.h"
#include "halfserve/util/json_depth.h"

namespace halfserve {

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw Error(path + ": invalid safetensors file: " + problem);
}

uint64_t read_u64_le(const std::byte* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

int64_t checked_nonnegative(const json& value, const std::string& path, const std::string& what) {
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<int64_t>() >= 0))
    // Quote scalars only: dumping a deeply nested array would recurse once per level and overflow the stack.
    fail(path, what + " must be a non-negative integer, got " +
                   (value.is_structured() ? "a JSON " + std::string(value.type_name()) : value.dump()));
  const uint64_t number = value.get<uint64_t>();
  if (number > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail(path, what + " is too large");
  return static_cast<int64_t>(number);
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin;
  uint64_t end;
};

Entry parse_entry(const std::string& path, const std::string& name, const json& value) {
  const std::string where = "tensor '" + name + "'";
  if (!value.is_object()) fail(path, where + " is not a JSON object");
  const auto dtype_field = value.find("dtype");
  if (dtype_field == value.end() || !dtype_field->is_string()) fail(path, where + " has no string 'dtype'");
  const auto dtype = dtype_from_name(dtype_field->get<std::string>());
  if (!dtype) fail(path, where + " has unknown dtype '" + dtype_field->get<std::string>() + "'");
  const auto shape_field = value.find("shape");
  if (shape_field == value.end() || !shape_field->is_array()) fail(path, where + " has no 'shape' array");
  if (shape_field->size() > 8) fail(path, where + " has " + std::to_string(shape_field->size()) + " dimensions");
  Entry entry{name, *dtype, {}, 0, 0};
  uint64_t numel = 1;
  for (const auto& dim : *shape_field) {
    const int64_t size = checked_nonnegative(dim, path, where + " shape dimension");
    entry.shape.push_back(size);
    if (size != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(size))
      fail(path, where + " shape " + shape_string(entry.shape) + " is too large");
    numel *= static_cast<uint64_t>(size);
  }
  const auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2)
    fail(path, where + " has no 'data_offsets' pair");
  entry.begin = static_cast<uint64_t>(checked_nonnegative((*offsets)[0], path, where + " data_offsets[0]"));
  entry.end = static_cast<uint64_t>(checked_nonnegative((*offsets)[1], path, where + " data_offsets[1]"));
  if (entry.end < entry.begin) fail(path, where + " has data_offsets that end before they begin");
  const uint64_t expected = numel * dtype_size(entry.dtype);
  if (entry.end - entry.begin != expected)
    fail(path, where + " holds " + std::to_string(entry.end - entry.begin) + " bytes but " +
                   std::string(dtype_name(entry.dtype)) + " " + shape_string(entry.shape) + " needs " +
                   std::to_string(expected));
  return entry;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path, FileResidence residence) {
  SafetensorsFile result;
  auto mapped = std::make_shared<const MappedFile>(path, residence);
  const auto bytes = mapped->bytes();
  if (bytes.size() < 8) fail(path, "file is " + std::to_string(bytes.size()) + " bytes, too short for a header");
  const uint64_t header_size = read_u64_le(bytes.data());
  if (header_size > kMaxSafetensorsHeaderBytes)
    fail(path, "header length " + std::to_string(header_size) + " exceeds the limit of " +
                   std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  if (header_size > bytes.size() - 8)
    fail(path, "header length " + std::to_string(header_size) + " runs past the end of the " +
                   std::to_string(bytes.size()) + "-byte file (truncated?)");
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8), header_size);
  json header;
  try {
    check_json_depth(header_text, "header");
    header = json::parse(header_text);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  } catch (const Error& e) {
    fail(path, e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  const uint64_t data_size = bytes.size() - 8 - header_size;
  const std::byte* data = bytes.data() + 8 + header_size;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(path, "__metadata__ is not a JSON object");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) fail(path, "__metadata__ value for '" + key + "' is not a string");
        result.metadata[key] = text.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, value));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& entry = entries[i];
    if (entry.begin < cursor)
      fail(path, "tensor '" + entry.name + "' overlaps tensor '" + entries[i - 1].name + "'");
    if (entry.begin > cursor)
      fail(path, std::to_string(entry.begin - cursor) + " unaccounted bytes before tensor '" + entry.name + "'");
    if (entry.end > data_size)
      fail(path, "tensor '" + entry.name + "' ends at byte " + std::to_string(entry.end) +
                     " but the data area has only " + std::to_string(data_size) + " bytes (truncated?)");
    cursor = entry.end;
  }
  if (cursor != data_size)
    fail(path, std::to_string(data_size - cursor) + " bytes after the last tensor are not described by the header");

  for (const Entry& entry : entries)
    result.tensors.add_view(entry.name, TensorView{entry.dtype, entry.shape,
                                                   std::span<const std::byte>(data + entry.begin, entry.end - entry.begin)});
  result.tensors.keep_alive(mapped);
  result.file = std::move(mapped);
  return result;
}

SafetensorsLayout::SafetensorsLayout(std::vector<NamedTensor> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : tensors_(std::move(tensors)) {
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const NamedTensor& a, const NamedTensor& b) {
    return dtype_size(a.view.dtype) > dtype_size(b.view.dtype);
  });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const auto& tensor : tensors_) {
    const uint64_t size = tensor.view.data.size();
    if (size != static_cast<uint64_t>(tensor.view.numel()) * dtype_size(tensor.view.dtype))
      throw Error("tensor " + tensor.name + ": byte count does not match its shape");
    // A repeated name (or one equal to the metadata key) would silently drop an entry from the header and leave
    // its bytes unaccounted for, producing a file no reader accepts.
    if (tensor.name == "__metadata__" || header.contains(tensor.name))
      throw Error("tensor name '" + tensor.name + "' is " + (tensor.name == "__metadata__" ? "reserved" : "repeated"));
    header[tensor.name] = {{"dtype", dtype_name(tensor.view.dtype)},
                           {"shape", tensor.view.shape},
                           {"data_offsets", {data_size_, data_size_ + size}}};
    data_size_ += size;
  }
  header_ = header.dump();
  // Pad with spaces (valid trailing JSON whitespace) so the data area starts 64-byte aligned.
  const size_t misalignment = (8 + header_.size()) % 64;
  if (misalignment != 0) header_.append(64 - misalignment, ' ');
}

void SafetensorsLayout::write(const std::string& path) const {
  AtomicFileWriter writer(path);
  std::byte length[8];
  uint64_t header_size = header_.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<std::byte>((header_size >> (8 * i)) & 0xff);
  writer.write(length, sizeof length);
  writer.write(header_.data(), header_.size());
  for (const auto& tensor : tensors_) writer.write(tensor.view.data);
  writer.commit();
}

}  // namespace halfserve
