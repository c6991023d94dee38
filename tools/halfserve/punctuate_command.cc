#include <iostream>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/text/punctuator.h"
#include "line_input.h"
#include "shipped_models.h"

namespace halfserve::cli {

namespace {
// Lines gathered before a model call: windows of many texts share batches, and output keeps flowing.
constexpr size_t kChunkLines = 256;
constexpr size_t kChunkBytes = 1 << 20;
}  // namespace

void add_punctuate_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand("punctuate", "Restore punctuation: one text per line in, one punctuated text per line out");
  struct Flags {
    ModelChoice model;
    std::string input;
    EngineFlags engine;
    PunctuatorOptions options;
    bool replace_invalid = false;
    size_t max_line_bytes = 16 << 20;
  };
  auto flags = std::make_shared<Flags>();
  flags->model.add_to(*command);
  command->add_option("--input", flags->input, "Read texts from this file instead of stdin");
  add_window_flags(*command, flags->options);
  command->add_flag("--keep-existing", flags->options.keep_existing, "Keep the input's punctuation instead of removing it first");
  command->add_flag("--replace-invalid", flags->replace_invalid, "Replace invalid UTF-8 bytes with U+FFFD instead of failing");
  command->add_option("--max-line-bytes", flags->max_line_bytes, "Longest line accepted");
  flags->engine.add_to(*command);
  command->callback([flags, &run] {
    run = [flags] {
      const auto model = BertModel::load(flags->model.path(), flags->engine.options());
      std::cerr << "punctuate: " << model->describe() << "\n";
      Punctuator punctuator(model, flags->options);
      LineInput input(flags->input, flags->max_line_bytes, flags->replace_invalid);
      std::vector<std::string> chunk;
      size_t chunk_bytes = 0;
      auto flush = [&] {
        for (const auto& text : punctuator.punctuate(chunk)) std::cout << text << '\n';
        std::cout.flush();
        chunk.clear();
        chunk_bytes = 0;
      };
      while (auto line = input.next()) {
        chunk_bytes += line->size();
        chunk.push_back(std::move(*line));
        if (chunk.size() >= kChunkLines || chunk_bytes >= kChunkBytes) flush();
      }
      flush();
      return 0;
    };
  });
}

}  // namespace halfserve::cli
