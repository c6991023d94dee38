#include "serve/tensor_proto_io.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <map>
#include <optional>

#include "halfserve/util/error.h"
#include "import/tf_tensor_proto.h"

namespace halfserve {

namespace {

using tensorflow::DataType;
using tensorflow::TensorProto;

// TensorProto.tensor_content is little-endian whatever the host; decode and encode byte by byte elsewhere.
template <typename T>
T load_little_endian(const char* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof value);
  if constexpr (std::endian::native == std::endian::big) {
    auto raw = std::bit_cast<std::array<char, sizeof(T)>>(value);
    std::reverse(raw.begin(), raw.end());
    value = std::bit_cast<T>(raw);
  }
  return value;
}

template <typename T>
void store_little_endian(T value, char* bytes) {
  auto raw = std::bit_cast<std::array<char, sizeof(T)>>(value);
  if constexpr (std::endian::native == std::endian::big) std::reverse(raw.begin(), raw.end());
  std::memcpy(bytes, raw.data(), sizeof(T));
}

std::string dims_text(int64_t rows, int64_t cols) { return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]"; }

// [rows, cols] from the tensor's shape; the element count must be representable.
std::pair<int64_t, int64_t> matrix_shape(const TensorProto& tensor, const std::string& name) {
  const auto& shape = tensor.tensor_shape();
  if (shape.unknown_rank() || shape.dim_size() != 2)
    throw InvalidArgument("input '" + name + "' must have rank 2 [batch, length], got " +
                          (shape.unknown_rank() ? std::string("an unknown rank") : "rank " + std::to_string(shape.dim_size())));
  const int64_t rows = shape.dim(0).size(), cols = shape.dim(1).size();
  if (rows < 0 || cols < 0) throw InvalidArgument("input '" + name + "' has a negative dimension: " + dims_text(rows, cols));
  if (cols != 0 && rows > std::numeric_limits<int32_t>::max() / cols)
    throw InvalidArgument("input '" + name + "' shape " + dims_text(rows, cols) + " is too large");
  return {rows, cols};
}

int32_t narrow_to_int32(int64_t value, const std::string& name, size_t index, int64_t cols) {
  if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max()) {
    const auto row = static_cast<int64_t>(index) / cols, column = static_cast<int64_t>(index) % cols;
    throw InvalidArgument("input '" + name + "'[" + std::to_string(row) + ", " + std::to_string(column) + "] = " +
                          std::to_string(value) + " is out of int32 range");
  }
  return static_cast<int32_t>(value);
}

void check_count(size_t count, int64_t rows, int64_t cols, const std::string& name, const char* where) {
  if (count != static_cast<size_t>(rows * cols))
    throw InvalidArgument("input '" + name + "' has " + std::to_string(count) + " values in " + where + " but shape " +
                          dims_text(rows, cols) + " needs " + std::to_string(rows * cols));
}

template <typename Wire>
std::vector<int32_t> decode_content(const std::string& content, int64_t rows, int64_t cols, const std::string& name) {
  if (content.size() % sizeof(Wire) != 0)
    throw InvalidArgument("input '" + name + "' tensor_content has " + std::to_string(content.size()) +
                          " bytes, not a multiple of " + std::to_string(sizeof(Wire)));
  const size_t count = content.size() / sizeof(Wire);
  check_count(count, rows, cols, name, "tensor_content");
  std::vector<int32_t> values(count);
  for (size_t i = 0; i < count; ++i)
    values[i] = narrow_to_int32(load_little_endian<Wire>(content.data() + i * sizeof(Wire)), name, i, cols);
  return values;
}

template <typename Field>
std::vector<int32_t> decode_typed(const Field& field, int64_t rows, int64_t cols, const std::string& name,
                                  const char* field_name) {
  check_count(static_cast<size_t>(field.size()), rows, cols, name, field_name);
  std::vector<int32_t> values(static_cast<size_t>(field.size()));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = narrow_to_int32(static_cast<int64_t>(field.Get(static_cast<int>(i))), name, i, cols);
  return values;
}

int64_t output_width(OutputRole role, int64_t num_labels, int64_t hidden_size) {
  switch (role) {
    case OutputRole::logits:
    case OutputRole::probabilities: return num_labels;
    case OutputRole::last_hidden_state: return hidden_size;
    case OutputRole::label_ids: return 0;
  }
  return 0;
}

void set_shape(tensorflow::TensorShapeProto& shape, std::initializer_list<int64_t> dims) {
  for (const int64_t size : dims) shape.add_dim()->set_size(size);
}

void write_floats(const std::vector<float>& values, TensorProto& tensor) {
  std::string content(values.size() * sizeof(float), '\0');
  for (size_t i = 0; i < values.size(); ++i) store_little_endian(values[i], content.data() + i * sizeof(float));
  tensor.set_dtype(tensorflow::DT_FLOAT);
  tensor.set_tensor_content(std::move(content));
}

void write_int64s(const std::vector<int32_t>& values, TensorProto& tensor) {
  std::string content(values.size() * sizeof(int64_t), '\0');
  for (size_t i = 0; i < values.size(); ++i)
    store_little_endian(static_cast<int64_t>(values[i]), content.data() + i * sizeof(int64_t));
  tensor.set_dtype(tensorflow::DT_INT64);
  tensor.set_tensor_content(std::move(content));
}

}  // namespace

IntMatrix read_int_matrix(const TensorProto& tensor, const std::string& name) {
  const auto [rows, cols] = matrix_shape(tensor, name);
  IntMatrix matrix{rows, cols, {}};
  const bool has_content = !tensor.tensor_content().empty();
  switch (tensor.dtype()) {
    case tensorflow::DT_INT32:
      matrix.values = has_content ? decode_content<int32_t>(tensor.tensor_content(), rows, cols, name)
                                  : decode_typed(tensor.int_val(), rows, cols, name, "int_val");
      break;
    case tensorflow::DT_INT64:
      matrix.values = has_content ? decode_content<int64_t>(tensor.tensor_content(), rows, cols, name)
                                  : decode_typed(tensor.int64_val(), rows, cols, name, "int64_val");
      break;
    default:
      throw InvalidArgument("input '" + name + "' has " + tf_dtype_name(tensor.dtype()) + "; expected DT_INT32 or DT_INT64");
  }
  return matrix;
}

InputBatch read_input_batch(const google::protobuf::Map<std::string, TensorProto>& inputs, const Signature& signature) {
  // Sorted, so that a request with several problems always names the same one.
  std::map<std::string, const TensorProto*> sorted;
  for (const auto& [name, tensor] : inputs) sorted.emplace(name, &tensor);
  std::vector<NamedInput> named;
  for (const auto& [name, tensor] : sorted) {
    input_role_of(signature, name);  // an unknown name is named before its tensor is read
    named.push_back({name, read_int_matrix(*tensor, name)});
  }
  return assemble_input_batch(std::move(named), signature);
}

void write_output_tensor(const OutputBatch& outputs, OutputRole role, int64_t num_labels, int64_t hidden_size,
                         TensorProto& tensor) {
  const int64_t width = output_width(role, num_labels, hidden_size);
  if (role == OutputRole::label_ids) {
    set_shape(*tensor.mutable_tensor_shape(), {outputs.batch, outputs.length});
  } else {
    set_shape(*tensor.mutable_tensor_shape(), {outputs.batch, outputs.length, width});
  }
  switch (role) {
    case OutputRole::logits: write_floats(outputs.logits, tensor); break;
    case OutputRole::probabilities: write_floats(outputs.probabilities, tensor); break;
    case OutputRole::last_hidden_state: write_floats(outputs.last_hidden_state, tensor); break;
    case OutputRole::label_ids: write_int64s(outputs.label_ids, tensor); break;
  }
}

tensorflow::SignatureDef signature_def(const Signature& signature, int64_t num_labels, int64_t hidden_size) {
  tensorflow::SignatureDef def;
  def.set_method_name(signature.method_name);
  for (const auto& [name, role] : signature.inputs) {
    tensorflow::TensorInfo& info = (*def.mutable_inputs())[name];
    info.set_name(name + ":0");
    info.set_dtype(tensorflow::DT_INT32);
    set_shape(*info.mutable_tensor_shape(), {-1, -1});
  }
  for (const auto& [name, role] : signature.outputs) {
    tensorflow::TensorInfo& info = (*def.mutable_outputs())[name];
    info.set_name(name + ":0");
    if (role == OutputRole::label_ids) {
      info.set_dtype(tensorflow::DT_INT64);
      set_shape(*info.mutable_tensor_shape(), {-1, -1});
    } else {
      info.set_dtype(tensorflow::DT_FLOAT);
      set_shape(*info.mutable_tensor_shape(), {-1, -1, output_width(role, num_labels, hidden_size)});
    }
  }
  return def;
}

}  // namespace halfserve
