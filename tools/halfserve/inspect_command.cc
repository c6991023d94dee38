#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "halfserve/convert/precision_cast.h"
#include "halfserve/format/frozen_model.h"

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
  for (const auto& label : m.labels) out["labels"].push_back({{"name", label.name}, {"mark", label.mark}});
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
    std::cout << " " << i << "=" << m.labels[i].name << (m.labels[i].mark.empty() ? "" : " [" + m.labels[i].mark + "]");
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

}  // namespace

void add_inspect_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand("inspect", "Show a frozen file's architecture, labels, signatures and tensors");
  struct Flags {
    std::string path;
    bool json = false;
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("FILE", flags->path, "Frozen .safetensors file")->required();
  command->add_flag("--json", flags->json, "Machine-readable output");
  command->callback([flags, &run] {
    run = [flags] {
      const FrozenModel model = load_frozen_model(flags->path);
      const uint64_t size = std::filesystem::file_size(flags->path);
      if (flags->json) print_json(model, size);
      else print_text(model, size);
      return 0;
    };
  });
}

}  // namespace halfserve::cli
