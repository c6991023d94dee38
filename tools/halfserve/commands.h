#pragma once

#include <CLI/CLI.hpp>
#include <functional>

// Each subcommand registers its flags on `app` and sets `run` to what it does once the flags are parsed.
namespace halfserve::cli {

using Action = std::function<int()>;

void add_synth_command(CLI::App& app, Action& run);
void add_convert_command(CLI::App& app, Action& run);
void add_inspect_command(CLI::App& app, Action& run);
void add_predict_command(CLI::App& app, Action& run);
void add_bench_command(CLI::App& app, Action& run);
void add_tokenize_command(CLI::App& app, Action& run);
void add_punctuate_command(CLI::App& app, Action& run);
void add_eval_command(CLI::App& app, Action& run);
void add_serve_command(CLI::App& app, Action& run);

}  // namespace halfserve::cli
