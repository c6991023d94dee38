#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "halfserve/format/frozen_model.h"
#include "halfserve/text/tokenizer.h"
#include "halfserve/format/vocabulary.h"
#include "halfserve/util/error.h"

namespace halfserve::cli {

namespace {

struct TokenizeFlags {
  std::string model, vocab, input;
  bool lower = false;
  bool no_strip_accents = false;
};

TokenizerSettings settings_from(const TokenizeFlags& flags) {
  if (!flags.model.empty()) return load_frozen_model(flags.model).metadata.tokenizer;
  TokenizerSettings settings;
  settings.vocab = read_vocabulary(flags.vocab);
  settings.do_lower_case = flags.lower;
  if (flags.no_strip_accents) settings.strip_accents = false;
  return settings;
}

std::string tokens_json(const std::vector<Token>& tokens) {
  nlohmann::ordered_json texts = nlohmann::ordered_json::array(), ids = nlohmann::ordered_json::array(),
                         spans = nlohmann::ordered_json::array();
  for (const Token& token : tokens) {
    texts.push_back(token.text);
    ids.push_back(token.id);
    spans.push_back({token.begin, token.end});
  }
  return nlohmann::ordered_json{{"tokens", texts}, {"ids", ids}, {"spans", spans}}.dump();
}

int tokenize_lines(const BertTokenizer& tokenizer, std::istream& in) {
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    std::vector<Token> tokens;
    try {
      tokens = tokenizer.tokenize(line);
    } catch (const InvalidArgument& e) {
      std::cout.flush();  // the lines before stay usable
      throw InvalidArgument("line " + std::to_string(number) + ": " + e.what());
    }
    std::cout << tokens_json(tokens) << '\n';
  }
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& app, Action& run) {
  auto* command = app.add_subcommand(
      "tokenize",
      "Tokenize one text per line (stdin or --input) as BERT's WordPiece tokenizer does; prints one JSON object per "
      "line: {\"tokens\", \"ids\", \"spans\"} (spans: [begin, end) byte offsets into the line)");
  auto flags = std::make_shared<TokenizeFlags>();
  auto* model = command->add_option("--model", flags->model, "Frozen .safetensors file whose tokenizer to use");
  auto* vocab = command->add_option("--vocab", flags->vocab, "WordPiece vocab.txt (one token per line)");
  auto* lower = command->add_flag("--lower", flags->lower, "Lower-case (and strip accents) like an uncased model");
  auto* keep_accents =
      command->add_flag("--no-strip-accents", flags->no_strip_accents, "Keep accents even when lower-casing");
  command->add_option("--input", flags->input, "Read the texts from this file instead of stdin");
  model->excludes(vocab);
  lower->excludes(model);
  keep_accents->excludes(model);
  command->callback([flags, &run] {
    if (flags->model.empty() && flags->vocab.empty()) throw CLI::RequiredError("--model or --vocab");
    run = [flags] {
      const BertTokenizer tokenizer(settings_from(*flags));
      if (flags->input.empty()) return tokenize_lines(tokenizer, std::cin);
      std::ifstream file(flags->input, std::ios::binary);
      if (!file) throw Error(flags->input + ": cannot open");
      return tokenize_lines(tokenizer, file);
    };
  });
}

}  // namespace halfserve::cli
