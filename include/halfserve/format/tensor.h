#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "halfserve/format/dtype.h"

namespace halfserve {

using Shape = std::vector<int64_t>;

std::string shape_string(const Shape& shape);  // "[768, 3072]"
int64_t shape_numel(const Shape& shape);

// A read-only view of one tensor's bytes, wherever they live (a mapped file or an owned buffer).
struct TensorView {
  DType dtype = DType::f32;
  Shape shape;
  std::span<const std::byte> data;

  int64_t numel() const { return shape_numel(shape); }
  // The values converted to float; valid for f32, f16, bf16 and f64 tensors.
  std::vector<float> to_float() const;
  float float_at(int64_t index) const;
};

// Named tensors plus whatever keeps their bytes alive. Names keep the order they were added in.
class TensorStore {
 public:
  // Keeps `owner` alive as long as this store, for views into it (a MappedFile, for instance).
  void keep_alive(std::shared_ptr<const void> owner) { owners_.push_back(std::move(owner)); }
  void add_view(const std::string& name, TensorView view);
  void add_owned(const std::string& name, DType dtype, Shape shape, std::vector<std::byte> bytes);
  void add_float(const std::string& name, Shape shape, const std::vector<float>& values);  // stored as F32

  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorView* find(const std::string& name) const;
  // Throws Error("missing tensor NAME") when absent.
  const TensorView& at(const std::string& name) const;
  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return names_.size(); }

 private:
  std::vector<std::string> names_;
  std::map<std::string, TensorView> index_;
  std::vector<std::shared_ptr<const void>> owners_;
};

}  // namespace halfserve
