#include <iostream>

#include "commands.h"
#include "halfserve/synth/synth_model.h"

namespace halfserve::cli {

void add_synth_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand("synth", "Write a model with the seed's architecture and deterministic random weights");
  struct Flags {
    std::string output;
    uint64_t seed = 1;
    BertConfig config = seed_architecture();
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("-o,--output", flags->output, "Frozen file to write")->required();
  command->add_option("--seed", flags->seed, "Random seed (same seed, same bytes)");
  command->add_option("--layers", flags->config.num_layers, "Encoder layers (default 2)")->check(CLI::PositiveNumber);
  command->add_option("--hidden", flags->config.hidden_size, "Hidden size (default 768)")->check(CLI::PositiveNumber);
  command->add_option("--heads", flags->config.num_heads, "Attention heads (default 12)")->check(CLI::PositiveNumber);
  command->add_option("--ffn", flags->config.intermediate_size, "FFN size (default 3072)")->check(CLI::PositiveNumber);
  command->add_option("--vocab", flags->config.vocab_size, "Vocabulary size (default 21128)")->check(CLI::PositiveNumber);
  command->add_option("--positions", flags->config.max_positions, "Maximum positions (default 512)")->check(CLI::PositiveNumber);
  command->callback([flags, &run] {
    run = [flags] {
      SynthOptions options;
      options.seed = flags->seed;
      options.config = flags->config;
      const FrozenModel model = synthesize_model(options);
      const uint64_t bytes = save_frozen_model(model, flags->output);
      std::cout << "wrote " << flags->output << ": synthetic BERT, " << model.metadata.config.num_layers << " layers, hidden "
                << model.metadata.config.hidden_size << ", vocabulary " << model.metadata.config.vocab_size << ", "
                << model.metadata.labels.size() << " labels, fp32, " << bytes << " bytes\n";
      return 0;
    };
  });
}

}  // namespace halfserve::cli
