#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace halfserve {

// Element types a frozen file may hold, named as in the safetensors header.
enum class DType : uint8_t { f32, f16, bf16, f64, i64, i32, i16, i8, u8, boolean };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);                      // "F32", "F16", ...
std::optional<DType> dtype_from_name(std::string_view name);  // nullopt for unknown names
bool is_floating(DType dtype);

// Precision of a model's weights in a file, and the precision a user asks the engine to compute in.
// int8: weights quantized per output channel (I8 + F32 scales), activations quantized per call.
enum class Precision : uint8_t { fp32, fp16, bf16, int8 };

std::string_view precision_name(Precision precision);  // "fp32", "fp16", "bf16", "int8"
Precision parse_precision(std::string_view name);      // throws InvalidArgument naming the bad value
DType storage_dtype(Precision precision);

}  // namespace halfserve
