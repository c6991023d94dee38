#include <fstream>
#include <optional>
#include <iostream>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/bench/bench_report.h"
#include "halfserve/bench/cpu_contention.h"
#include "halfserve/bench/stream_bench.h"
#include "halfserve/bench/wire_bench.h"
#include "halfserve/engine/device.h"
#include "halfserve/util/error.h"
#include "python_peers.h"
#include "halfserve/util/mapped_file.h"

namespace halfserve::cli {

namespace {

// Writes through a temporary file, so a plot or report is never left half written.
void write_text_file(const std::string& path, const std::string& text) {
  AtomicFileWriter writer(path);
  writer.write(text.data(), text.size());
  writer.commit();
}

// Every flag of `halfserve bench`, in-process and over the wire.
struct BenchFlags {
  std::string model, precisions = "fp32,fp16,bf16", lengths = "64,128", batches = "1,8,16,32,64,128";
  std::string format = "markdown", plot, output;
  std::vector<std::string> peers;
  EngineFlags engine;
  double seconds_per_cell = 0.5;
  int min_repetitions = 3, max_repetitions = 200;
  bool ragged = false;
  int contend = 0;
  double contend_seconds = 3600;
  std::string target, model_name, signature = "serving_default", input_name = "input_ids", concurrency = "1,4,16,64";
  double sweep_seconds = 10;
  int64_t sweep_batch = 1, sweep_length = 64;
  int streams = 0;  // > 0: time punctuation streams instead of the grid and sweep
  double stream_rate = 3, stream_seconds = 30;
  int64_t stream_window = 0, stream_stride = 0;
};

void add_bench_options(CLI::App& command, BenchFlags& flags) {
  command.add_option("--model", flags.model, "Frozen .safetensors file (in-process mode)");
  command.add_option("--target", flags.target,
                     "Over the wire instead: grpc://HOST:PORT or http://HOST:PORT of a running halfserve or TF Serving "
                     "(its Predict), v2+grpc://HOST:PORT or v2+http://HOST:PORT of any Open Inference Protocol (KServe "
                     "v2) server");
  command.add_option("--model-name", flags.model_name, "With --target: the served model's name");
  command.add_option("--signature", flags.signature, "With --target: signature name");
  command.add_option("--input-name", flags.input_name, "With --target: name of the ids input");
  command.add_option("--concurrency", flags.concurrency, "With --target: client counts of the concurrency sweep");
  command.add_option("--sweep-seconds", flags.sweep_seconds, "With --target: seconds per concurrency point")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--sweep-batch", flags.sweep_batch, "With --target: rows per request in the sweep")->check(CLI::PositiveNumber);
  command.add_option("--sweep-length", flags.sweep_length, "With --target: tokens per row in the sweep")->check(CLI::PositiveNumber);
  command.add_option("--streams", flags.streams,
                     "With --target grpc://: time this many live punctuation streams at once instead (commit delay)")
      ->check(CLI::Range(1, 100000));
  command.add_option("--stream-rate", flags.stream_rate, "With --streams: words per second per stream")
      ->check(CLI::PositiveNumber);
  command.add_option("--stream-seconds", flags.stream_seconds, "With --streams: seconds each stream sends")
      ->check(CLI::PositiveNumber);
  command.add_option("--stream-window", flags.stream_window, "With --streams: window (tokens); default the server's")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--stream-stride", flags.stream_stride, "With --streams: stride (tokens); default the server's")
      ->check(CLI::NonNegativeNumber);
  // The grid's flags may be given again to override (scripts/main.sh appends $HALFSERVE_BENCH_FLAGS): the last wins.
  constexpr auto last_wins = CLI::MultiOptionPolicy::TakeLast;
  command.add_option("--precisions", flags.precisions, "Comma-separated precisions to time: fp32, fp16, bf16, int8")
      ->multi_option_policy(last_wins);
  command.add_option("--lengths", flags.lengths, "Comma-separated sequence lengths")->multi_option_policy(last_wins);
  command.add_option("--batches", flags.batches, "Comma-separated batch sizes")->multi_option_policy(last_wins);
  command.add_option("--peer", flags.peers, "Also time a peer on the same weights and inputs (repeatable or comma-separated): "
                                              "gemm, torch, onnxruntime, openvino, ctranslate2, tensorflow")
      ->delimiter(',')
      ->check(CLI::IsMember({"gemm", "torch", "onnxruntime", "openvino", "ctranslate2", "tensorflow"}));
  command.add_flag("--ragged", flags.ragged, "Rows of random real length, uniform over 25-100 % of the length");
  command.add_option("--contend", flags.contend,
                     "Time under CPU contention: N busy loops in other processes for the whole run (a sidecar's share)")
      ->check(CLI::Range(0, 1024));
  command.add_option("--contend-seconds", flags.contend_seconds, "With --contend: the busy loops end after this long at most")
      ->check(CLI::PositiveNumber);
  command.add_option("--format", flags.format, "markdown, csv or json")->check(CLI::IsMember({"markdown", "csv", "json"}));
  command.add_option("--plot", flags.plot, "Write an SVG chart of latency against batch to this file");
  command.add_option("--output", flags.output, "Write the report to this file instead of stdout");
  command.add_option("--seconds-per-cell", flags.seconds_per_cell, "Minimum timing per cell")
      ->check(CLI::NonNegativeNumber)
      ->multi_option_policy(last_wins);
  command.add_option("--min-reps", flags.min_repetitions, "Minimum timed runs per cell")->check(CLI::PositiveNumber);
  command.add_option("--max-reps", flags.max_repetitions, "Maximum timed runs per cell")->check(CLI::PositiveNumber);
  command.add_option("--device", flags.engine.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  command.add_option("--threads", flags.engine.threads, "Intra-op threads for halfserve and every peer (default: all cores)")
      ->check(CLI::NonNegativeNumber);
}

// --target with --streams: live punctuation streams against a running server.
Action stream_bench_action(std::shared_ptr<const BenchFlags> flags) {
  const WireTarget target = parse_wire_target(flags->target, flags->model_name);
  StreamLoadOptions options;
  options.streams = flags->streams;
  options.words_per_second = flags->stream_rate;
  options.seconds = flags->stream_seconds;
  options.window = flags->stream_window;
  options.stride = flags->stream_stride;
  return [flags, target, options] {
    std::cerr << "bench: " << options.streams << " punctuation streams on " << wire_target_url(target) << "\n";
    const StreamLoadResult result = run_stream_load(target, options);
    const std::string text = format_stream_report(result, options, target);
    if (flags->output.empty()) std::cout << text;
    else write_text_file(flags->output, text);
    return result.errors == 0 ? 0 : 1;
  };
}

// --target: the grid and a concurrency sweep over REST or gRPC against a running server.
Action wire_bench_action(std::shared_ptr<const BenchFlags> flags) {
  WireTarget target = parse_wire_target(flags->target, flags->model_name);
  target.signature_name = flags->signature;
  target.input_name = flags->input_name;
  WireGridOptions grid;
  grid.lengths = parse_positive_list(flags->lengths, "--lengths");
  grid.batches = parse_positive_list(flags->batches, "--batches");
  grid.seconds_per_cell = flags->seconds_per_cell;
  grid.min_repetitions = flags->min_repetitions;
  grid.max_repetitions = std::max(flags->max_repetitions, flags->min_repetitions);
  ConcurrencyOptions sweep;
  sweep.clients.clear();
  for (const int64_t clients : parse_positive_list(flags->concurrency, "--concurrency")) sweep.clients.push_back(static_cast<int>(clients));
  sweep.seconds = flags->sweep_seconds;
  sweep.batch = flags->sweep_batch;
  sweep.length = flags->sweep_length;
  return [flags, target, grid, sweep]() mutable {
    grid.progress = sweep.progress = [](const std::string& line) { std::cerr << "  " << line << "\n"; };
    std::cerr << "bench: " << wire_target_url(target) << " model " << target.model_name << "\n";
    const auto cells = run_wire_grid(target, grid);
    const auto points = run_concurrency_sweep(target, sweep);
    const std::string text = format_wire_report(cells, points, target);
    if (flags->output.empty()) std::cout << text;
    else write_text_file(flags->output, text);
    int64_t errors = 0;
    for (const auto& cell : cells) errors += cell.errors;
    for (const auto& point : points) errors += point.errors;
    return errors == 0 ? 0 : 1;
  };
}

// --model: halfserve at every precision in-process, with the peers asked for, on one grid.
Action model_bench_action(std::shared_ptr<const BenchFlags> flags) {
  BenchOptions options;
  options.precisions = parse_precision_list(flags->precisions, "--precisions");
  options.grid.lengths = parse_positive_list(flags->lengths, "--lengths");
  options.grid.batches = parse_positive_list(flags->batches, "--batches");
  options.grid.seconds_per_cell = flags->seconds_per_cell;
  options.grid.min_repetitions = flags->min_repetitions;
  options.grid.max_repetitions = std::max(flags->max_repetitions, flags->min_repetitions);
  options.grid.ragged = flags->ragged;
  options.peers = flags->peers;
  options.run_peer = run_python_peer;
  return [flags, options]() mutable {
    options.grid.engine = flags->engine.options();
    if (options.grid.engine.threads == 0) options.grid.engine.threads = default_cpu_threads();
    options.grid.progress = [](const std::string& line) { std::cerr << "  " << line << "\n"; };
    const FrozenModel model = load_frozen_model(flags->model);
    std::cerr << "bench: " << flags->model << ", " << options.precisions.size() << " precisions x " << options.grid.lengths.size()
              << " lengths x " << options.grid.batches.size() << " batches" << (options.peers.empty() ? "" : ", with peers") << "\n";
    std::optional<CpuContention> contention;
    if (flags->contend > 0) contention.emplace(flags->contend, flags->contend_seconds);
    BenchReport report = run_bench(model, flags->model, options);
    if (contention) {
      report.machine += ", under contention from " + contention->description();
      contention.reset();
    }
    const std::string text = flags->format == "csv" ? format_csv(report)
                             : flags->format == "json" ? format_json(report)
                                                       : format_markdown(report);
    if (flags->output.empty()) std::cout << text;
    else write_text_file(flags->output, text);
    if (!flags->plot.empty()) write_text_file(flags->plot, format_svg(report));
    for (const auto& note : report.notes) std::cerr << "bench: " << note << "\n";
    return 0;
  };
}

}  // namespace

void add_bench_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand(
      "bench", "Time the model on the seed's batch x length grid, in-process, beside peers (torch, onnxruntime, openvino, "
               "ctranslate2, tensorflow, gemm)");
  auto flags = std::make_shared<BenchFlags>();
  add_bench_options(*command, *flags);
  command->callback([flags, &run] {
    if (flags->model.empty() == flags->target.empty())
      throw CLI::ValidationError("bench", "give --model (in-process) or --target (over the wire)");
    if (flags->streams > 0 && flags->target.empty())
      throw CLI::ValidationError("bench", "--streams times a running server: give --target grpc://HOST:PORT");
    run = flags->target.empty() ? model_bench_action(flags)
          : flags->streams > 0  ? stream_bench_action(flags)
                                : wire_bench_action(flags);
  });
}

}  // namespace halfserve::cli
