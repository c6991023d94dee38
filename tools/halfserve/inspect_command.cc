#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "halfserve/engine/precision_cast.h"
#include "halfserve/format/frozen_model.h"
#include "halfserve/import/model_source.h"
#include "halfserve/import/tf_graph.h"

namespace halfserve::cli {

namespace {

nlohmann::ordered_json signature_json(const Signature& signature) {
  nlohmann::ordered_json inputs = nlohmann::ordered_json::object(), outputs = nlohmann::ordered_json::object();
  for (const auto& [name, role] : signature.inputs) inputs[name] = std::string(input_role_name(role));
  for (const auto& [name, role] : signature.outputs) outputs[name] = std::string(output_role_name(role));
  return {{"name", signature.name}, {"method_name", signature.method_name}, {"inputs", inputs}, {"outputs", outputs}};
}

void print_json(const FrozenModel& model, uint64_t file_size) {
  const ModelMetadata& m = model.metadata;
  const BertConfig& c = m.config;
  nlohmann::ordered_json out;
  out["file"] = model.path;
  out["file_size"] = file_size;
  out["architecture"] = {{"num_layers", c.num_layers}, {"hidden_size", c.hidden_size}, {"num_heads", c.num_heads},
                         {"intermediate_size", c.intermediate_size}, {"vocab_size", c.vocab_size},
                         {"max_positions", c.max_positions}, {"type_vocab_size", c.type_vocab_size},
                         {"activation", activation_name(c.activation)}, {"layer_norm_eps", c.layer_norm_eps}};
  out["labels"] = nlohmann::ordered_json::array();
  for (const auto& label : m.labels) {
    nlohmann::ordered_json entry = {{"name", label.name}, {"mark", label.mark}};
    if (label.capitalize) entry["capitalize"] = true;
    out["labels"].push_back(std::move(entry));
  }
  out["tokenizer"] = {{"vocab_size", m.tokenizer.vocab.size()}, {"do_lower_case", m.tokenizer.do_lower_case}};
  out["signatures"] = nlohmann::ordered_json::array();
  for (const auto& signature : m.signatures) out["signatures"].push_back(signature_json(signature));
  out["provenance"] = {{"source_format", m.provenance.source_format}, {"source", m.provenance.source},
                       {"precision", precision_name(m.provenance.precision)}, {"created", m.provenance.created},
                       {"tool", m.provenance.tool}, {"notes", m.provenance.notes}};
  out["tensors"] = nlohmann::ordered_json::array();
  for (const auto& name : model.tensors.names()) {
    const TensorView& t = model.tensors.at(name);
    out["tensors"].push_back({{"name", name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}});
  }
  std::cout << out.dump(2) << "\n";
}

void print_text(const FrozenModel& model, uint64_t file_size) {
  const ModelMetadata& m = model.metadata;
  const BertConfig& c = m.config;
  std::cout << model.path << ": " << file_size << " bytes, " << precision_name(m.provenance.precision) << "\n"
            << "architecture: BERT, " << c.num_layers << " layers, hidden " << c.hidden_size << ", " << c.num_heads
            << " heads, FFN " << c.intermediate_size << ", vocabulary " << c.vocab_size << ", " << c.max_positions
            << " positions, " << c.type_vocab_size << " token types, " << activation_name(c.activation)
            << ", LayerNorm eps " << c.layer_norm_eps << "\n";
  std::cout << "labels:";
  if (m.labels.empty()) std::cout << " none (encoder only)";
  for (size_t i = 0; i < m.labels.size(); ++i)
    std::cout << " " << i << "=" << m.labels[i].name << (m.labels[i].mark.empty() ? "" : " [" + m.labels[i].mark + "]")
              << (m.labels[i].capitalize ? " [capitalize]" : "");
  std::cout << "\ntokenizer: " << m.tokenizer.type << ", " << m.tokenizer.vocab.size() << " tokens, lower case "
            << (m.tokenizer.do_lower_case ? "yes" : "no") << "\n";
  for (const auto& signature : m.signatures) std::cout << "signature: " << signature_json(signature).dump() << "\n";
  std::cout << "provenance: " << m.provenance.source_format << " from " << m.provenance.source << ", " << m.provenance.tool
            << ", " << m.provenance.created << "\n";
  for (const auto& note : m.provenance.notes) std::cout << "  note: " << note << "\n";
  if (!m.provenance.conversion_report.empty()) std::cout << format_cast_report(m.provenance.conversion_report);
  std::cout << "tensors (" << model.tensors.size() << "):\n";
  for (const auto& name : model.tensors.names()) {
    const TensorView& t = model.tensors.at(name);
    std::cout << "  " << name << " " << dtype_name(t.dtype) << " " << shape_string(t.shape) << "\n";
  }
}

nlohmann::ordered_json binding_json(const TfTensorBinding& binding) {
  return {{"tensor", binding.tensor}, {"dtype", binding.dtype}, {"shape", binding.shape}};
}

// Like inspect_checkpoint and saved_model_cli show: every tensor, and a SavedModel's tags and signatures.
void inspect_source(const std::string& path, SourceFormat format, const std::string& tags, bool json) {
  const auto source = open_tensor_source(path, format, tags);
  const auto* graph = dynamic_cast<const TfGraphSource*>(source.get());
  nlohmann::ordered_json out;
  out["file"] = path;
  out["format"] = source->format();
  if (graph != nullptr && graph->format() == "saved-model") {
    out["tags"] = graph->tags();
    out["signatures"] = nlohmann::ordered_json::array();
    for (const auto& definition : graph->signature_defs()) {
      nlohmann::ordered_json inputs = nlohmann::ordered_json::object(), outputs = nlohmann::ordered_json::object();
      for (const auto& input : definition.inputs) inputs[input.alias] = binding_json(input);
      for (const auto& output : definition.outputs) outputs[output.alias] = binding_json(output);
      out["signatures"].push_back(
          {{"name", definition.name}, {"method_name", definition.method_name}, {"inputs", inputs}, {"outputs", outputs}});
    }
  }
  out["tensors"] = nlohmann::ordered_json::array();
  for (const auto& info : source->tensors()) {
    nlohmann::ordered_json tensor = {{"name", info.name}, {"dtype", dtype_name(info.dtype)}, {"shape", info.shape}};
    if (json) {
      const LoadedTensor loaded = source->read(info.name);
      const int64_t count = loaded.view.numel();
      if (count > 0 && (is_floating(info.dtype) || info.dtype == DType::i32 || info.dtype == DType::i64)) {
        double low = 0, high = 0, sum = 0;
        for (int64_t i = 0; i < count; ++i) {
          double value = 0;
          if (is_floating(info.dtype)) value = loaded.view.float_at(i);
          else if (info.dtype == DType::i32) value = reinterpret_cast<const int32_t*>(loaded.view.data.data())[i];
          else value = static_cast<double>(reinterpret_cast<const int64_t*>(loaded.view.data.data())[i]);
          low = i == 0 ? value : std::min(low, value);
          high = i == 0 ? value : std::max(high, value);
          sum += value;
        }
        tensor["min"] = low;
        tensor["max"] = high;
        tensor["mean"] = sum / static_cast<double>(count);
      }
    }
    out["tensors"].push_back(tensor);
  }
  out["notes"] = source->notes();
  if (json) {
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << path << ": " << source->format() << ", " << source->tensors().size() << " tensors\n";
  if (out.contains("tags")) {
    std::cout << "tags: " << out["tags"].dump() << "\n";
    for (const auto& signature : out["signatures"]) {
      std::cout << "signature '" << signature["name"].get<std::string>() << "' (" << signature["method_name"].get<std::string>() << ")\n";
      for (const char* side : {"inputs", "outputs"})
        for (const auto& [alias, binding] : signature[side].items())
          std::cout << "  " << side << "['" << alias << "']: " << binding["tensor"].get<std::string>() << " "
                    << binding["dtype"].get<std::string>() << " " << binding["shape"].dump() << "\n";
    }
  }
  for (const auto& info : source->tensors())
    std::cout << "  " << info.name << " " << dtype_name(info.dtype) << " " << shape_string(info.shape) << "\n";
  for (const auto& note : source->notes()) std::cout << "note: " << note << "\n";
}

}  // namespace

void add_inspect_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand(
      "inspect", "Show a frozen file's architecture, labels, signatures and tensors, or any source's tensors and signatures");
  struct Flags {
    std::string path, from = "auto", tags = "serve";
    bool json = false;
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("FILE", flags->path, "Frozen .safetensors file, or any source convert reads")->required();
  command->add_flag("--json", flags->json, "Machine-readable output (with min/max/mean of every source tensor)");
  command->add_option("--from", flags->from, "Source format (default: detected from the content)")
      ->check(CLI::IsMember({"auto", "hf", "torch", "tf-checkpoint", "saved-model", "graphdef", "frozen"}));
  command->add_option("--tags", flags->tags, "SavedModel MetaGraph tags (default: serve)");
  command->callback([flags, &run] {
    run = [flags] {
      const SourceFormat format = flags->from == "auto" ? detect_source_format(flags->path) : parse_source_format(flags->from);
      if (format != SourceFormat::frozen) {
        inspect_source(flags->path, format, flags->tags, flags->json);
        return 0;
      }
      const FrozenModel model = load_frozen_model(flags->path);
      const uint64_t size = std::filesystem::file_size(flags->path);
      if (flags->json) print_json(model, size);
      else print_text(model, size);
      return 0;
    };
  });
}

}  // namespace halfserve::cli
