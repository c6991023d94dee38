#pragma once

#include <optional>
#include <string>

#include "halfserve/import/tensor_source.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/tensor_shape.pb.h"
#include "tensorflow/core/framework/types.pb.h"

namespace halfserve {

// halfserve's dtype for a TF DataType, reference types (TF1 variables, DT_FLOAT_REF...) as their base type; nullopt for
// types it does not read (strings, resources, complex). The one map every TF reader (checkpoint, graph, gRPC) uses.
std::optional<DType> dtype_from_tf(tensorflow::DataType type);
std::string tf_dtype_name(tensorflow::DataType type);  // "DT_FLOAT"

// The shape of a TensorShapeProto; throws Error (naming `what`) for unknown rank, unknown or huge dimensions.
Shape shape_from_tf(const tensorflow::TensorShapeProto& shape, const std::string& what);

// The values of a TensorProto (tensor_content or the typed *_val fields, a single value filling the tensor as
// TensorFlow does) as an owned tensor. Throws Error naming `what` for unsupported dtypes or inconsistent sizes.
LoadedTensor decode_tensor_proto(const tensorflow::TensorProto& proto, const std::string& what);

}  // namespace halfserve
