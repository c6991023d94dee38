#include <iostream>
#include <iterator>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/serve/predict_json.h"
#include "halfserve/util/error.h"
#include "halfserve/util/mapped_file.h"

namespace halfserve::cli {

namespace {

std::string read_stdin_bounded(size_t max_bytes) {
  std::string body;
  char buffer[1 << 16];
  while (std::cin.read(buffer, sizeof buffer) || std::cin.gcount() > 0) {
    body.append(buffer, static_cast<size_t>(std::cin.gcount()));
    if (body.size() > max_bytes)
      throw Error("request on stdin is larger than the limit of " + std::to_string(max_bytes) + " bytes (--max-request-bytes)");
  }
  return body;
}

}  // namespace

void add_predict_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand(
      "predict", "Run a TF Serving predict request (JSON on stdin, column or row form) and print the reply");
  struct Flags {
    std::string model, input;
    std::vector<std::string> outputs;
    EngineFlags engine;
    size_t max_request_bytes = 64 << 20;
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("--model", flags->model, "Frozen .safetensors file")->required();
  command->add_option("--input", flags->input, "Read the request from this file instead of stdin");
  command->add_option("--output", flags->outputs,
                      "Outputs to return (repeatable or comma-separated): logits, label_ids, probabilities, last_hidden_state or a "
                      "signature's output names (default: the signature's outputs)")
      ->delimiter(',');
  command->add_option("--max-request-bytes", flags->max_request_bytes, "Largest request accepted");
  flags->engine.add_to(*command);
  command->callback([flags, &run] {
    run = [flags] {
      const auto model = BertModel::load(flags->model, flags->engine.options());
      const std::string body = flags->input.empty() ? read_stdin_bounded(flags->max_request_bytes)
                                                    : read_file_bounded(flags->input, flags->max_request_bytes);
      const PredictRequest request = parse_predict_request(body, model->metadata());
      const auto selected = select_outputs(*request.signature, flags->outputs, model->metadata().has_head());
      Workspace workspace;
      const OutputBatch outputs = model->run(request.inputs, output_selection(selected), workspace);
      std::cout << format_predict_response(request, outputs, selected,
                                           static_cast<int64_t>(model->metadata().labels.size()),
                                           model->config().hidden_size)
                << "\n";
      return 0;
    };
  });
}

}  // namespace halfserve::cli
