#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/format/model_metadata.h"
#include "serve/named_inputs.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/protobuf/meta_graph.pb.h"

#include <google/protobuf/map.h>

// TensorProto <-> the engine's batches, for TF Serving's gRPC Predict.
namespace halfserve {

// Reads a rank-2 DT_INT32 or DT_INT64 tensor, from its typed values (int_val / int64_val) or its little-endian
// tensor_content (which wins when set, as in TensorFlow). Throws InvalidArgument naming `name` for another
// dtype or rank, a value count that does not match the shape, or an int64 value outside int32.
IntMatrix read_int_matrix(const tensorflow::TensorProto& tensor, const std::string& name);

// The model's batch from a request's named inputs: every name must be one of the signature's inputs, the ids
// must be there, and a mask or type ids must have the ids' shape. Throws InvalidArgument naming the problem.
InputBatch read_input_batch(const google::protobuf::Map<std::string, tensorflow::TensorProto>& inputs,
                            const Signature& signature);

// One output as TensorFlow would return it: logits, probabilities and last_hidden_state DT_FLOAT
// [batch, length, width]; label_ids DT_INT64 [batch, length] (TF's ArgMax yields int64). Values travel as
// little-endian tensor_content, the compact form tf.make_ndarray reads.
void write_output_tensor(const OutputBatch& outputs, OutputRole role, int64_t num_labels, int64_t hidden_size,
                         tensorflow::TensorProto& tensor);

// The signature as a SignatureDef, the way a SavedModel exporting it would describe it: tensor names
// "<name>:0", DT_INT32 inputs of shape [-1, -1], outputs typed as write_output_tensor writes them.
tensorflow::SignatureDef signature_def(const Signature& signature, int64_t num_labels, int64_t hidden_size);

}  // namespace halfserve
