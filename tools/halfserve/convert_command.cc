#include <iostream>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/convert/precision_cast.h"
#include "halfserve/import/model_source.h"

namespace halfserve::cli {

void add_convert_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand("convert", "Import a model (Hugging Face folder or frozen file) into a frozen file");
  struct Flags {
    std::string source, output, precision = "fp32", from = "auto";
    bool allow_nonfinite = false;
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("SRC", flags->source, "Hugging Face folder or frozen .safetensors file")->required();
  command->add_option("-o,--output", flags->output, "Frozen file to write (written to a temporary name, then renamed)")->required();
  command->add_option("--precision", flags->precision, "Weight precision: fp32, fp16 or bf16")->check(precision_validator());
  command->add_option("--from", flags->from, "Source format: auto (by content), hf or frozen")
      ->check(CLI::IsMember({"auto", "hf", "frozen"}));
  command->add_flag("--allow-nonfinite", flags->allow_nonfinite,
                    "Replace NaN with 0 and clamp Inf instead of refusing (the report counts them)");
  command->callback([flags, &run] {
    run = [flags] {
      const FrozenModel source = import_model(flags->source, parse_source_format(flags->from));
      for (const auto& note : source.metadata.provenance.notes) std::cerr << "note: " << note << "\n";
      const FrozenModel converted = cast_model(source, {parse_precision(flags->precision), flags->allow_nonfinite});
      const uint64_t bytes = save_frozen_model(converted, flags->output);
      std::cout << format_cast_report(converted.metadata.provenance.conversion_report);
      std::cout << "wrote " << flags->output << ": " << flags->precision << ", " << bytes << " bytes\n";
      return 0;
    };
  });
}

}  // namespace halfserve::cli
