#include <chrono>
#include <iostream>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/engine/precision_cast.h"
#include "halfserve/import/model_source.h"

namespace halfserve::cli {

void add_convert_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand(
      "convert", "Import a model (Hugging Face, pytorch_model.bin, TF checkpoint, SavedModel, frozen GraphDef or a frozen "
                 "file) into one frozen file");
  struct Flags {
    std::string source, output, precision = "fp32", from = "auto", activation;
    ImportOptions import;
    bool allow_nonfinite = false;
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("SRC", flags->source,
                      "Model folder or file: HF folder or model.safetensors, pytorch_model.bin, TF checkpoint prefix, "
                      "SavedModel folder, frozen GraphDef .pb, or a frozen .safetensors")
      ->required();
  command->add_option("-o,--output", flags->output, "Frozen file to write (written to a temporary name, then renamed)")->required();
  command->add_option("--precision", flags->precision,
                      "Weight precision: fp32, fp16, bf16 or int8 (int8: encoder weights quantized per output channel "
                      "with F32 scales; embeddings and classifier fp16, biases and LayerNorm fp32)")
      ->check(precision_validator());
  command->add_option("--from", flags->from, "Source format (default: detected from the content)")
      ->check(CLI::IsMember({"auto", "hf", "torch", "tf-checkpoint", "saved-model", "graphdef", "frozen"}));
  command->add_option("--head", flags->import.head_scope, "TF variable scope of the token head, e.g. whichPun");
  command->add_option("--labels", flags->import.labels_file, "Labels, one per line: NAME or NAME<TAB>MARK");
  command->add_option("--vocab", flags->import.vocab_file, "vocab.txt (default: the one beside the source)");
  command->add_option("--config", flags->import.config_file, "config.json or bert_config.json (default: beside the source)");
  command->add_option("--tags", flags->import.saved_model_tags, "SavedModel MetaGraph tags (default: serve)");
  command->add_option("--activation", flags->activation,
                      "GELU form: gelu_erf or gelu_tanh (default: tanh for google-research TF names, hidden_act otherwise)")
      ->check(CLI::IsMember({"gelu_erf", "gelu_tanh"}));
  command->add_flag("--allow-nonfinite", flags->allow_nonfinite,
                    "Replace NaN with 0 and clamp Inf instead of refusing (the report counts them)");
  command->callback([flags, &run] {
    run = [flags] {
      ImportOptions options = flags->import;
      options.format = parse_source_format(flags->from);
      if (!flags->activation.empty()) options.activation = parse_activation(flags->activation);
      const auto started = std::chrono::steady_clock::now();
      options.progress = [started](const std::string& line) {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (seconds > 1.0) std::cerr << "convert: " << line << " (" << static_cast<int>(seconds) << " s)\n";
      };
      const FrozenModel source = import_model(flags->source, options);
      std::cerr << "convert: read " << flags->source << " as " << source.metadata.provenance.source_format << "\n";
      for (const auto& note : source.metadata.provenance.notes) std::cerr << "note: " << note << "\n";
      const FrozenModel converted = cast_model(source, {parse_precision(flags->precision), flags->allow_nonfinite});
      const uint64_t bytes = save_frozen_model(converted, flags->output);
      std::cout << format_cast_report(converted.metadata.provenance.conversion_report);
      std::cout << "signatures:";
      for (const auto& signature : converted.metadata.signatures) std::cout << " " << signature.name;
      std::cout << "\nwrote " << flags->output << ": " << flags->precision << ", " << bytes << " bytes\n";
      return 0;
    };
  });
}

}  // namespace halfserve::cli
