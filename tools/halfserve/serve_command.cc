#include <signal.h>

#include <chrono>
#include <iostream>
#include <mutex>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/engine/backend.h"
#include "halfserve/serve/server.h"
#include "halfserve/version.h"

namespace halfserve::cli {

namespace {

std::mutex log_mutex;
void log_line(const std::string& line) {
  std::lock_guard lock(log_mutex);
  std::cerr << utc_timestamp() << " " << line << std::endl;
}

}  // namespace

void add_serve_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand(
      "serve", "Serve models with TF Serving's REST and gRPC APIs (same flags as tensorflow_model_server)");
  // As in tensorflow_model_server, a flag given again takes its last value: arguments appended to the container
  // image's entrypoint (deploy/Containerfile, which passes --port=8500 --rest_api_port=8501) override its defaults.
  command->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  struct Flags {
    int port = 8500, rest_api_port = 8501;
    std::string rest_api_host = "0.0.0.0", grpc_host = "0.0.0.0";
    std::string model_name = "default", model_base_path, model_config_file, batching_parameters_file;
    bool enable_batching = false, access_log = false;
    double poll_seconds = 1.0;
    size_t max_request_bytes = 64 << 20;
    EngineFlags engine;
    int drain_seconds = 30;
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("--port", flags->port, "gRPC port (0: no gRPC)")->check(CLI::Range(0, 65535));
  command->add_option("--rest_api_port", flags->rest_api_port, "REST port (0: no REST, as TF Serving)")->check(CLI::Range(0, 65535));
  command->add_option("--rest_api_host", flags->rest_api_host, "REST address to bind");
  command->add_option("--grpc_host", flags->grpc_host, "gRPC address to bind");
  command->add_option("--model_name", flags->model_name, "Name of the model served from --model_base_path");
  command->add_option("--model_base_path", flags->model_base_path, "Folder of numbered version folders, each with one frozen file");
  command->add_option("--model_config_file", flags->model_config_file, "TF Serving ModelServerConfig text file (several models)");
  command->add_flag("--enable_batching", flags->enable_batching, "Merge concurrent requests into batches");
  command->add_option("--batching_parameters_file", flags->batching_parameters_file, "TF Serving BatchingParameters text file");
  command->add_option("--file_system_poll_wait_seconds", flags->poll_seconds,
                      "Seconds between checks for new versions (0: load once)")->check(CLI::NonNegativeNumber);
  command->add_option("--max_request_bytes", flags->max_request_bytes, "Largest request body or gRPC message accepted");
  command->add_option("--drain_seconds", flags->drain_seconds, "On SIGTERM, how long requests in flight may take to finish");
  command->add_flag("--access_log", flags->access_log, "One JSON line per REST request on stderr");
  flags->engine.add_to(*command);
  command->callback([flags, &run] {
    if (flags->model_base_path.empty() == flags->model_config_file.empty())
      throw CLI::ValidationError("serve", "give either --model_base_path (with --model_name) or --model_config_file");
    if (!flags->batching_parameters_file.empty() && !flags->enable_batching)
      throw CLI::ValidationError("--batching_parameters_file", "needs --enable_batching");
    run = [flags] {
      // Signals go to sigwait() below, never to a worker thread; block them before any thread starts.
      sigset_t signals;
      sigemptyset(&signals);
      sigaddset(&signals, SIGTERM);
      sigaddset(&signals, SIGINT);
      pthread_sigmask(SIG_BLOCK, &signals, nullptr);

      ServerOptions options;
      options.models = flags->model_config_file.empty()
                           ? std::vector<ServedModelConfig>{{flags->model_name, flags->model_base_path, {}, {}}}
                           : read_model_config_file(flags->model_config_file);
      options.manager.engine = flags->engine.options();
      // A device that cannot work (--device cuda without a GPU) stops the server before it listens, rather than
      // leaving it up with every version failing to load.
      create_backend({options.manager.engine.device, options.manager.engine.threads});
      options.manager.batching_enabled = flags->enable_batching;
      if (!flags->batching_parameters_file.empty())
        options.manager.batching = read_batching_parameters_file(flags->batching_parameters_file);
      options.manager.poll_seconds = flags->poll_seconds;
      options.manager.log = log_line;
      options.grpc_port = flags->port;
      options.grpc_host = flags->grpc_host;
      options.rest_port = flags->rest_api_port;
      options.rest_host = flags->rest_api_host;
      options.max_request_bytes = flags->max_request_bytes;
      if (flags->access_log) options.access_log = log_line;

      Server server(options);
      server.start();
      log_line("halfserve " + std::string(kVersion) + " serving: gRPC port " + std::to_string(server.grpc_port()) +
               ", REST port " + std::to_string(server.rest_port()) + (flags->enable_batching ? ", batching on" : ""));
      int signal_number = 0;
      sigwait(&signals, &signal_number);
      log_line(std::string("received ") + (signal_number == SIGTERM ? "SIGTERM" : "SIGINT") +
               ": draining requests in flight, then exiting");
      server.shutdown(std::chrono::seconds(flags->drain_seconds));
      log_line("stopped");
      return 0;
    };
  });
}

}  // namespace halfserve::cli
