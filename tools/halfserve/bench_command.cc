#include <iostream>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/bench/latency_grid.h"

namespace halfserve::cli {

void add_bench_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand("bench", "Time the model on the seed's batch x length grid, in-process");
  struct Flags {
    std::string model, precisions = "fp32,fp16,bf16", lengths = "64,128", batches = "1,8,16,32,64,128";
    EngineFlags engine;
    double seconds_per_cell = 0.5;
    int min_repetitions = 3, max_repetitions = 200;
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("--model", flags->model, "Frozen .safetensors file")->required();
  command->add_option("--precisions", flags->precisions, "Comma-separated precisions to time");
  command->add_option("--lengths", flags->lengths, "Comma-separated sequence lengths");
  command->add_option("--batches", flags->batches, "Comma-separated batch sizes");
  command->add_option("--seconds-per-cell", flags->seconds_per_cell, "Minimum timing per cell")->check(CLI::NonNegativeNumber);
  command->add_option("--min-reps", flags->min_repetitions, "Minimum timed runs per cell")->check(CLI::PositiveNumber);
  command->add_option("--max-reps", flags->max_repetitions, "Maximum timed runs per cell")->check(CLI::PositiveNumber);
  command->add_option("--device", flags->engine.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_option("--threads", flags->engine.threads, "Intra-op threads (default: all cores)")->check(CLI::NonNegativeNumber);
  command->callback([flags, &run] {
    LatencyGridOptions options;
    options.precisions = parse_precision_list(flags->precisions, "--precisions");
    options.lengths = parse_positive_list(flags->lengths, "--lengths");
    options.batches = parse_positive_list(flags->batches, "--batches");
    options.seconds_per_cell = flags->seconds_per_cell;
    options.min_repetitions = flags->min_repetitions;
    options.max_repetitions = std::max(flags->max_repetitions, flags->min_repetitions);
    run = [flags, options]() mutable {
      options.engine = flags->engine.options();
      options.progress = [](const std::string& line) { std::cerr << "  " << line << "\n"; };
      const FrozenModel model = load_frozen_model(flags->model);
      std::cerr << "bench: " << flags->model << ", " << options.precisions.size() << " precisions x "
                << options.lengths.size() << " lengths x " << options.batches.size() << " batches\n";
      const LatencyGridResult result = run_latency_grid(model, options);
      std::cout << format_latency_table(result, options);
      return 0;
    };
  });
}

}  // namespace halfserve::cli
