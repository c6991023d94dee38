#include "halfserve/format/frozen_model.h"

#include <set>

#include "halfserve/format/bert_tensors.h"
#include "halfserve/format/safetensors.h"
#include "halfserve/util/error.h"

namespace halfserve {

namespace {

SafetensorsLayout layout_for(const FrozenModel& model) {
  std::vector<NamedTensor> tensors;
  for (const auto& name : model.tensors.names()) tensors.push_back({name, model.tensors.at(name)});
  return SafetensorsLayout(std::move(tensors), metadata_to_strings(model.metadata));
}

std::string missing_tensor_message(const ExpectedTensor& expected, Precision precision) {
  std::string message = "missing tensor " + expected.name + " " + shape_string(expected.shape);
  if (expected.role == TensorRole::weight_scale)
    message += " (the per-row scales an " + std::string(precision_name(precision)) + " file keeps beside each I8 tensor)";
  return message;
}

void check_dtype(const ExpectedTensor& expected, const TensorView& tensor, Precision precision) {
  const std::string found = "tensor " + expected.name + " has dtype " + std::string(dtype_name(tensor.dtype));
  if (expected.dtype) {
    if (tensor.dtype != *expected.dtype)
      throw Error(found + " (expected " + std::string(dtype_name(*expected.dtype)) + " in an " +
                  std::string(precision_name(precision)) + " file)");
    return;
  }
  if (tensor.dtype != DType::f32 && tensor.dtype != DType::f16 && tensor.dtype != DType::bf16)
    throw Error(found + " (expected F32, F16 or BF16" +
                (precision == Precision::int8 ? std::string(": only encoder weights and word embeddings are I8 in an int8 file)")
                                              : ")"));
}

}  // namespace

void FrozenModel::validate() const {
  const ModelMetadata& m = metadata;
  m.config.validate();
  if (m.signatures.empty()) throw Error("model has no serving signature");
  if (static_cast<int64_t>(m.tokenizer.vocab.size()) > m.config.vocab_size)
    throw Error("vocabulary has " + std::to_string(m.tokenizer.vocab.size()) + " tokens but the embedding table only " +
                std::to_string(m.config.vocab_size) + " rows");
  for (const auto& signature : m.signatures)
    for (const auto& [name, role] : signature.outputs)
      if (role != OutputRole::last_hidden_state && !m.has_head())
        throw Error("signature '" + signature.name + "' output '" + name + "' needs a classification head, which this model lacks");

  std::set<std::string> expected_names;
  const Precision precision = m.provenance.precision;
  // int8 files written before their word embeddings were quantized hold them fp16, without scales.
  const TensorView* word_embeddings = tensors.find(bert_names::embedding("word_embeddings"));
  const bool i8_word_embeddings = word_embeddings != nullptr && word_embeddings->dtype == DType::i8;
  for (const auto& expected :
       expected_bert_tensors(m.config, static_cast<int64_t>(m.labels.size()), precision, i8_word_embeddings)) {
    expected_names.insert(expected.name);
    const TensorView* tensor = tensors.find(expected.name);
    if (tensor == nullptr) throw Error(missing_tensor_message(expected, precision));
    if (tensor->shape != expected.shape)
      throw Error("tensor " + expected.name + " has shape " + shape_string(tensor->shape) + ", the architecture needs " +
                  shape_string(expected.shape));
    check_dtype(expected, *tensor, precision);
  }
  for (const auto& name : tensors.names())
    if (!expected_names.count(name)) throw Error("unexpected tensor " + name + " (not part of the architecture)");
}

FrozenModel load_frozen_model(const std::string& path, FileResidence residence) {
  SafetensorsFile file = read_safetensors(path, residence);
  FrozenModel model;
  model.path = path;
  try {
    model.metadata = metadata_from_strings(file.metadata);
    model.tensors = std::move(file.tensors);
    model.validate();
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  return model;
}

uint64_t save_frozen_model(const FrozenModel& model, const std::string& path) {
  model.validate();
  const SafetensorsLayout layout = layout_for(model);
  layout.write(path);
  return layout.file_size();
}

uint64_t frozen_model_file_size(const FrozenModel& model) { return layout_for(model).file_size(); }

}  // namespace halfserve
