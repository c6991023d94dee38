#include "halfserve/format/tensor.h"

#include <cstring>

#include "halfserve/util/error.h"
#include "halfserve/util/half.h"

namespace halfserve {

std::string shape_string(const Shape& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t numel = 1;
  for (int64_t dim : shape) numel *= dim;
  return numel;
}

float TensorView::float_at(int64_t index) const {
  const std::byte* element = data.data() + index * static_cast<int64_t>(dtype_size(dtype));
  switch (dtype) {
    case DType::f32: {
      float value;
      std::memcpy(&value, element, sizeof value);
      return value;
    }
    case DType::f16: {
      uint16_t bits;
      std::memcpy(&bits, element, sizeof bits);
      return half_to_float(bits);
    }
    case DType::bf16: {
      uint16_t bits;
      std::memcpy(&bits, element, sizeof bits);
      return bfloat16_to_float(bits);
    }
    case DType::f64: {
      double value;
      std::memcpy(&value, element, sizeof value);
      return static_cast<float>(value);
    }
    default:
      throw Error("tensor of dtype " + std::string(dtype_name(dtype)) + " cannot be read as floating point");
  }
}

std::vector<float> TensorView::to_float() const {
  const int64_t count = numel();
  std::vector<float> values(static_cast<size_t>(count));
  if (dtype == DType::f32) {
    std::memcpy(values.data(), data.data(), values.size() * sizeof(float));
    return values;
  }
  for (int64_t i = 0; i < count; ++i) values[static_cast<size_t>(i)] = float_at(i);
  return values;
}

void TensorStore::add_view(const std::string& name, TensorView view) {
  if (contains(name)) throw Error("duplicate tensor " + name);
  names_.push_back(name);
  index_.emplace(name, std::move(view));
}

void TensorStore::add_owned(const std::string& name, DType dtype, Shape shape, std::vector<std::byte> bytes) {
  auto buffer = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
  TensorView view{dtype, std::move(shape), std::span<const std::byte>(buffer->data(), buffer->size())};
  if (static_cast<size_t>(view.numel()) * dtype_size(dtype) != view.data.size())
    throw Error("tensor " + name + ": " + std::to_string(view.data.size()) + " bytes do not match shape " +
                shape_string(view.shape));
  add_view(name, std::move(view));
  owners_.push_back(std::move(buffer));
}

void TensorStore::add_float(const std::string& name, Shape shape, const std::vector<float>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  add_owned(name, DType::f32, std::move(shape), std::move(bytes));
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &it->second;
}

const TensorView& TensorStore::at(const std::string& name) const {
  const TensorView* view = find(name);
  if (view == nullptr) throw Error("missing tensor " + name);
  return *view;
}

}  // namespace halfserve
