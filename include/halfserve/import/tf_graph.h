#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "halfserve/format/model_metadata.h"
#include "halfserve/import/tensor_source.h"

namespace halfserve {

// One named input or output of a TF signature and the graph tensor behind it ("input_ids:0").
struct TfTensorBinding {
  std::string alias;
  std::string tensor;
  std::string dtype;  // "DT_INT32"
  Shape shape;        // -1 for unknown dimensions; empty with unknown_rank
};

struct TfSignatureDef {
  std::string name;
  std::string method_name;
  std::vector<TfTensorBinding> inputs;
  std::vector<TfTensorBinding> outputs;
};

// A TensorFlow graph opened for import: a SavedModel (its MetaGraph for the chosen tags, with the variables of
// variables/ as tensors) or a frozen GraphDef (weights as Const nodes). Graph constants are tensors too.
class TfGraphSource : public TensorSource {
 public:
  ~TfGraphSource() override;
  std::string format() const override;
  const std::vector<SourceTensorInfo>& tensors() const override;
  LoadedTensor read(const std::string& name) override;
  std::vector<std::string> notes() const override;

  const std::vector<std::string>& tags() const;                 // empty for a GraphDef
  const std::vector<TfSignatureDef>& signature_defs() const;    // empty for a GraphDef
  // The halfserve signature for a TF one: each input and output mapped to an engine role by following the graph
  // (the placeholder that reaches the word-embedding lookup is input_ids, ...). Throws Error naming the input or
  // output that could not be mapped.
  Signature map_signature(const TfSignatureDef& definition) const;
  // The attention head count the graph reshapes to ([batch, length, heads, head_size] in layer 0's
  // self-attention), when it states it as constants whose product is `hidden`.
  std::optional<int64_t> attention_heads(int64_t hidden) const;

  struct State;

 private:
  friend std::unique_ptr<TfGraphSource> open_saved_model(const std::string&, const std::string&);
  friend std::unique_ptr<TfGraphSource> open_graphdef(const std::string&);
  explicit TfGraphSource(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// `path` is the SavedModel folder (or its saved_model.pb). `tags` selects the MetaGraph ("serve" by default;
// a SavedModel with a single MetaGraph is used whatever its tags).
std::unique_ptr<TfGraphSource> open_saved_model(const std::string& path, const std::string& tags = "serve");
std::unique_ptr<TfGraphSource> open_graphdef(const std::string& path);

bool is_saved_model(const std::string& path);
bool is_graphdef(const std::string& path);

}  // namespace halfserve
