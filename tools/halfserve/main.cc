// halfserve: a thin command-line layer over libhalfserve. Exit codes: 0 ok, 1 failure, 2 usage.
#include <iostream>

#include "commands.h"
#include "halfserve/util/error.h"
#include "halfserve/version.h"

int main(int argc, char** argv) {
  CLI::App app{"halfserve: convert, run and serve BERT token classifiers in fp32, fp16, bf16 and int8"};
  app.set_version_flag("--version", std::string("halfserve ") + halfserve::kVersion);
  app.require_subcommand(1);
  halfserve::cli::Action run;
  halfserve::cli::add_synth_command(app, run);
  halfserve::cli::add_convert_command(app, run);
  halfserve::cli::add_inspect_command(app, run);
  halfserve::cli::add_predict_command(app, run);
  halfserve::cli::add_bench_command(app, run);
  halfserve::cli::add_tokenize_command(app, run);
  halfserve::cli::add_punctuate_command(app, run);
  halfserve::cli::add_eval_command(app, run);
  halfserve::cli::add_serve_command(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  const std::string command = app.get_subcommands().front()->get_name();
  try {
    return run();
  } catch (const CLI::ParseError& e) {
    std::cerr << "halfserve " << command << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "halfserve " << command << ": error: " << e.what() << "\n";
    return 1;
  }
}
