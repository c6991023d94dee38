#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "halfserve/engine/bert_model.h"
#include "halfserve/format/model_metadata.h"

// What every protocol's predict request holds before it is a batch: named integer matrices. REST (JSON) and gRPC
// (TensorProto) read their own wire format into these, and one function turns them into the engine's InputBatch,
// so both check names and shapes, and word their errors, alike.
namespace halfserve {

// An integer input the way the engine takes it: row-major [rows, cols].
struct IntMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int32_t> values;
};

// One input as a request named it; no name: REST's bare forms, which give only the ids.
struct NamedInput {
  std::optional<std::string> name;
  IntMatrix matrix;
};

// "input_ids, attention_mask, token_type_ids": the signature's input names, for errors.
std::string input_names(const Signature& signature);

// The role of the signature's input `name`; throws InvalidArgument naming the signature's inputs when it has none.
InputRole input_role_of(const Signature& signature, const std::string& name);

// The model's batch from a request's inputs: every name must be one of the signature's inputs, the ids must be
// there, and a mask or type ids must have the ids' shape. Throws InvalidArgument naming the problem (for the first
// bad input in the given order).
InputBatch assemble_input_batch(std::vector<NamedInput> inputs, const Signature& signature);

}  // namespace halfserve
