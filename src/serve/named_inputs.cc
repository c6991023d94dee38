#include "serve/named_inputs.h"

#include <array>

#include "halfserve/util/error.h"

namespace halfserve {

namespace {

std::string dims_text(const IntMatrix& matrix) {
  return "[" + std::to_string(matrix.rows) + ", " + std::to_string(matrix.cols) + "]";
}

}  // namespace

std::string input_names(const Signature& signature) {
  std::string names;
  for (const auto& [name, role] : signature.inputs) names += (names.empty() ? "" : ", ") + name;
  return names;
}

InputRole input_role_of(const Signature& signature, const std::string& name) {
  const auto role = signature.input_role(name);
  if (!role)
    throw InvalidArgument("input '" + name + "' is not an input of signature '" + signature.name + "' (inputs: " +
                          input_names(signature) + ")");
  return *role;
}

InputBatch assemble_input_batch(std::vector<NamedInput> inputs, const Signature& signature) {
  std::array<IntMatrix*, 3> by_role{};  // indexed by InputRole
  for (NamedInput& input : inputs) {
    const InputRole role = input.name ? input_role_of(signature, *input.name) : InputRole::input_ids;
    by_role[static_cast<size_t>(role)] = &input.matrix;
  }
  const auto name_of = [&](InputRole role) {
    return signature.input_name(role).value_or(std::string(input_role_name(role)));
  };
  IntMatrix* ids = by_role[static_cast<size_t>(InputRole::input_ids)];
  if (ids == nullptr)
    throw InvalidArgument("request has no '" + name_of(InputRole::input_ids) + "' input (signature '" + signature.name +
                          "' inputs: " + input_names(signature) + ")");
  InputBatch batch;
  batch.batch = ids->rows;
  batch.length = ids->cols;
  batch.input_ids = std::move(ids->values);
  // Compare shapes, not value counts: a [2, 2] mask must not pass for [1, 4] ids.
  for (const InputRole role : {InputRole::attention_mask, InputRole::token_type_ids}) {
    IntMatrix* matrix = by_role[static_cast<size_t>(role)];
    if (matrix == nullptr) continue;
    if (matrix->rows != batch.batch || matrix->cols != batch.length)
      throw InvalidArgument("input '" + name_of(role) + "' " + dims_text(*matrix) + " does not have the shape of '" +
                            name_of(InputRole::input_ids) + "' [" + std::to_string(batch.batch) + ", " +
                            std::to_string(batch.length) + "]");
    (role == InputRole::attention_mask ? batch.attention_mask : batch.token_type_ids) = std::move(matrix->values);
  }
  return batch;
}

}  // namespace halfserve
