#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "cli_options.h"
#include "commands.h"
#include "halfserve/text/punctuator.h"
#include "halfserve/text/streaming_punctuator.h"
#include "halfserve/util/error.h"
#include "halfserve/util/utf8.h"
#include "line_input.h"
#include "shipped_models.h"

namespace halfserve::cli {

namespace {
// Lines gathered before a model call: windows of many texts share batches, and output keeps flowing.
constexpr size_t kChunkLines = 256;
constexpr size_t kChunkBytes = 1 << 20;

struct StreamFlags {
  PunctuatorOptions options;
  bool window_given = false, stride_given = false;
  bool replace_invalid = false;
  size_t max_buffered_bytes = 0;
  std::string input;
};

// --stream: reads whatever has arrived (read(2), not whole lines) and prints each settled part at once. Every line is
// one text, as without --stream, so the output is the same, only sooner; a line may go on forever.
int punctuate_stream(const std::shared_ptr<const BertModel>& model, const StreamFlags& flags) {
  StreamingOptions options;  // the streaming defaults, unless the flags say otherwise (then as punctuate reads them)
  if (flags.window_given) options.window = flags.options.window;
  if (flags.stride_given || flags.window_given) options.stride = flags.options.stride;
  options.batch_size = flags.options.batch_size;
  auto workspace = std::make_shared<Workspace>();
  StreamingPunctuator stream(model->metadata(), std::make_shared<const BertTokenizer>(model->metadata().tokenizer),
                             [model, workspace](const InputBatch& in, const OutputSelection& out) {
                               return model->run(in, out, *workspace);
                             },
                             options);
  std::cerr << "punctuate --stream: window " << stream.window() + 2 << ", stride " << stream.stride()
            << ": a token waits for at most " << stream.max_lookahead_tokens() << " tokens after it\n";
  const std::string source = flags.input.empty() ? "stdin" : flags.input;
  int fd = STDIN_FILENO;
  if (!flags.input.empty() && (fd = ::open(flags.input.c_str(), O_RDONLY | O_CLOEXEC)) < 0)
    throw Error(flags.input + ": cannot open: " + std::strerror(errno));
  size_t line = 1;
  bool line_started = false;
  std::string partial;  // --replace-invalid: a character split by a read, kept until its end arrives
  std::string out;
  auto invalid = [&](const InvalidArgument& e) {
    return Error(source + ": line " + std::to_string(line) + " is not valid UTF-8: " + e.what() +
                 " (use --replace-invalid to replace bad bytes with U+FFFD)");
  };
  auto feed = [&](std::string_view bytes) {
    try {
      if (!flags.replace_invalid) {
        out += stream.append(bytes).text;
      } else {
        partial.append(bytes);
        const size_t keep = incomplete_utf8_suffix(partial);
        out += stream.append(replace_invalid_utf8(std::string_view(partial).substr(0, partial.size() - keep))).text;
        partial.erase(0, partial.size() - keep);
      }
    } catch (const InvalidArgument& e) {
      throw invalid(e);
    }
    if (stream.buffered_bytes() > flags.max_buffered_bytes)
      throw Error(source + ": line " + std::to_string(line) + " holds more than " + std::to_string(flags.max_buffered_bytes) +
                  " bytes not yet punctuated (--max-line-bytes)");
  };
  auto end_line = [&] {
    try {
      if (!partial.empty()) out += stream.append(replace_invalid_utf8(partial)).text;
      partial.clear();
      out += stream.flush().text;
    } catch (const InvalidArgument& e) {
      throw invalid(e);
    }
    out += '\n';
    ++line;
    line_started = false;
  };
  std::vector<char> buffer(1 << 16);
  for (;;) {
    const ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw Error(source + ": read failed: " + std::strerror(errno));
    if (got == 0) break;
    const std::string_view chunk(buffer.data(), static_cast<size_t>(got));
    for (size_t at = 0; at < chunk.size();) {
      const size_t newline = chunk.find('\n', at);
      const size_t end = newline == std::string_view::npos ? chunk.size() : newline;
      if (end > at) {
        line_started = true;
        feed(chunk.substr(at, end - at));
      }
      if (newline == std::string_view::npos) break;
      end_line();
      at = newline + 1;
    }
    std::cout << out << std::flush;
    out.clear();
  }
  if (line_started) end_line();  // a last line without its newline, as punctuate reads it
  std::cout << out << std::flush;
  if (fd != STDIN_FILENO) ::close(fd);
  return 0;
}

}  // namespace

void add_punctuate_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand("punctuate", "Restore punctuation: one text per line in, one punctuated text per line out");
  struct Flags {
    ModelChoice model;
    std::string input;
    EngineFlags engine;
    PunctuatorOptions options;
    bool replace_invalid = false;
    bool stream = false;
    size_t max_line_bytes = 16 << 20;
  };
  auto flags = std::make_shared<Flags>();
  flags->model.add_to(*command);
  command->add_option("--input", flags->input, "Read texts from this file instead of stdin");
  add_window_flags(*command, flags->options);
  auto* keep_existing = command->add_flag("--keep-existing", flags->options.keep_existing,
                                          "Keep the input's punctuation instead of removing it first");
  command
      ->add_flag("--stream", flags->stream,
                 "Print each part of a line as soon as later text cannot change it (live transcripts; "
                 "docs/streaming.md). Default window 64, stride 16")
      ->excludes(keep_existing);
  command->add_flag("--replace-invalid", flags->replace_invalid, "Replace invalid UTF-8 bytes with U+FFFD instead of failing");
  command->add_option("--max-line-bytes", flags->max_line_bytes,
                      "Longest line accepted (with --stream: the most text of a line held unpunctuated)");
  flags->engine.add_to(*command);
  command->callback([flags, command, &run] {
    run = [flags, command] {
      const auto model = BertModel::load(flags->model.path(), flags->engine.options());
      std::cerr << "punctuate: " << model->describe() << "\n";
      if (flags->stream)
        return punctuate_stream(model, {flags->options, command->count("--window") > 0, command->count("--stride") > 0,
                                        flags->replace_invalid, flags->max_line_bytes, flags->input});
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
