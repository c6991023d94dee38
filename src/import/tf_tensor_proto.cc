#include "import/tf_tensor_proto.h"

#include <cstring>
#include <limits>

#include "halfserve/util/error.h"

namespace halfserve {

namespace {

// Graph constants are small; a frozen BERT's largest is its embedding table (tens of millions of values).
constexpr int64_t kMaxConstantElements = int64_t{1} << 31;
// A constant may carry fewer values than its shape (TensorFlow repeats the last one, or reads none as zeros), so a
// few bytes of file can declare gigabytes. Real frozen weights carry their content; what is filled in by
// repetition stays below this, and a larger claim is refused before anything is allocated.
constexpr size_t kMaxFilledConstantBytes = size_t{64} << 20;

// The bytes of values the proto itself holds for `dtype`: tensor_content, or the one repeated field decode reads
// for it (values in other fields are ignored, so they cannot vouch for a size).
size_t carried_bytes(const tensorflow::TensorProto& proto, DType dtype) {
  if (!proto.tensor_content().empty()) return proto.tensor_content().size();
  size_t values = 0;
  switch (dtype) {
    case DType::f32: values = static_cast<size_t>(proto.float_val_size()); break;
    case DType::f64: values = static_cast<size_t>(proto.double_val_size()); break;
    case DType::f16:
    case DType::bf16: values = static_cast<size_t>(proto.half_val_size()); break;
    case DType::i64: values = static_cast<size_t>(proto.int64_val_size()); break;
    case DType::boolean: values = static_cast<size_t>(proto.bool_val_size()); break;
    default: values = static_cast<size_t>(proto.int_val_size()); break;
  }
  return values * dtype_size(dtype);
}

template <typename Source, typename Target>
void fill(const Source& values, int64_t numel, std::vector<std::byte>& bytes, const std::string& what) {
  if (values.size() == 0) return;  // all zeros, as TensorFlow reads it
  if (values.size() > numel)
    throw Error(what + ": " + std::to_string(values.size()) + " values for " + std::to_string(numel) + " elements");
  auto* out = reinterpret_cast<Target*>(bytes.data());
  for (int64_t i = 0; i < numel; ++i) {
    // Fewer values than elements: TensorFlow repeats the last one.
    const auto index = std::min<int64_t>(i, values.size() - 1);
    out[i] = static_cast<Target>(values.Get(static_cast<int>(index)));
  }
}

}  // namespace

std::optional<DType> dtype_from_tf(tensorflow::DataType type) {
  const int base = type > 100 ? type - 100 : type;  // reference types of TF1 variables
  switch (base) {
    case tensorflow::DT_FLOAT: return DType::f32;
    case tensorflow::DT_HALF: return DType::f16;
    case tensorflow::DT_BFLOAT16: return DType::bf16;
    case tensorflow::DT_DOUBLE: return DType::f64;
    case tensorflow::DT_INT32: return DType::i32;
    case tensorflow::DT_INT64: return DType::i64;
    case tensorflow::DT_INT16: return DType::i16;
    case tensorflow::DT_INT8: return DType::i8;
    case tensorflow::DT_UINT8: return DType::u8;
    case tensorflow::DT_BOOL: return DType::boolean;
    default: return std::nullopt;
  }
}

std::string tf_dtype_name(tensorflow::DataType type) {
  const auto* descriptor = tensorflow::DataType_descriptor()->FindValueByNumber(type);
  return descriptor != nullptr ? descriptor->name() : "DataType " + std::to_string(static_cast<int>(type));
}

Shape shape_from_tf(const tensorflow::TensorShapeProto& proto, const std::string& what) {
  if (proto.unknown_rank()) throw Error(what + ": unknown rank");
  Shape shape;
  int64_t numel = 1;
  for (const auto& dim : proto.dim()) {
    if (dim.size() < 0) throw Error(what + ": unknown dimension in its shape");
    shape.push_back(dim.size());
    if (dim.size() > 0 && numel > kMaxConstantElements / dim.size()) throw Error(what + ": shape too large");
    numel *= dim.size();
  }
  return shape;
}

LoadedTensor decode_tensor_proto(const tensorflow::TensorProto& proto, const std::string& what) {
  const auto dtype = dtype_from_tf(proto.dtype());
  if (!dtype) throw Error(what + ": unsupported dtype " + tf_dtype_name(proto.dtype()));
  Shape shape = shape_from_tf(proto.tensor_shape(), what);
  const int64_t numel = shape_numel(shape);
  const size_t element = dtype_size(*dtype);
  const size_t declared = static_cast<size_t>(numel) * element;
  // Checked before the buffer exists: a wrong-sized tensor_content, and a declared size that repetition would fill.
  if (!proto.tensor_content().empty() && proto.tensor_content().size() != declared)
    throw Error(what + ": tensor_content holds " + std::to_string(proto.tensor_content().size()) + " bytes, " +
                std::string(dtype_name(*dtype)) + " " + shape_string(shape) + " needs " + std::to_string(declared));
  if (declared > kMaxFilledConstantBytes && carried_bytes(proto, *dtype) < declared)
    throw Error(what + ": declares " + std::string(dtype_name(*dtype)) + " " + shape_string(shape) + " (" +
                std::to_string(declared) + " bytes) but carries " + std::to_string(carried_bytes(proto, *dtype)) +
                " bytes of values; constants filled by repetition are limited to " +
                std::to_string(kMaxFilledConstantBytes) + " bytes");
  auto bytes = std::make_shared<std::vector<std::byte>>(declared);
  if (!proto.tensor_content().empty()) {
    std::memcpy(bytes->data(), proto.tensor_content().data(), bytes->size());
  } else {
    switch (*dtype) {
      case DType::f32: fill<decltype(proto.float_val()), float>(proto.float_val(), numel, *bytes, what); break;
      case DType::f64: fill<decltype(proto.double_val()), double>(proto.double_val(), numel, *bytes, what); break;
      case DType::f16:
      case DType::bf16: fill<decltype(proto.half_val()), uint16_t>(proto.half_val(), numel, *bytes, what); break;
      case DType::i64: fill<decltype(proto.int64_val()), int64_t>(proto.int64_val(), numel, *bytes, what); break;
      case DType::i32: fill<decltype(proto.int_val()), int32_t>(proto.int_val(), numel, *bytes, what); break;
      case DType::i16: fill<decltype(proto.int_val()), int16_t>(proto.int_val(), numel, *bytes, what); break;
      case DType::i8: fill<decltype(proto.int_val()), int8_t>(proto.int_val(), numel, *bytes, what); break;
      case DType::u8: fill<decltype(proto.int_val()), uint8_t>(proto.int_val(), numel, *bytes, what); break;
      case DType::boolean: fill<decltype(proto.bool_val()), uint8_t>(proto.bool_val(), numel, *bytes, what); break;
    }
  }
  TensorView view{*dtype, std::move(shape), std::span<const std::byte>(bytes->data(), bytes->size())};
  return {std::move(view), std::move(bytes)};
}

}  // namespace halfserve
