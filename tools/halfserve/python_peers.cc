#include "python_peers.h"

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <random>

#include "halfserve/engine/backend.h"
#include "halfserve/util/error.h"
#include "halfserve/util/mapped_file.h"

extern char** environ;

namespace halfserve::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Where the peers' scripts live: the source tree this binary was built from, or $HALFSERVE_SOURCE_DIR. (The CLI
// may know its source tree; the library never does.)
fs::path source_dir() {
  if (const char* override_dir = std::getenv("HALFSERVE_SOURCE_DIR")) return override_dir;
  return HALFSERVE_SOURCE_DIR;
}

struct ChildResult {
  int exit_code = -1;
  uint64_t peak_rss = 0;  // bytes
};

// Runs a command (no shell), stdout to `stdout_path` ("" = inherit), stderr inherited; returns its exit code and
// peak RSS (wait4's rusage is the child's own, not the whole process tree's).
ChildResult run_child(const std::vector<std::string>& argv, const std::string& stdout_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!stdout_path.empty())
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw Error("cannot start " + argv[0] + ": " + std::strerror(spawned));
  int status = 0;
  struct rusage usage {};
  if (wait4(pid, &status, 0, &usage) < 0) throw Error("waiting for " + argv[0] + " failed");
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, static_cast<uint64_t>(usage.ru_maxrss) * 1024};
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

json batch_json(const InputBatch& in) {
  json ids = json::array(), mask = json::array();
  for (int64_t r = 0; r < in.batch; ++r) {
    const auto begin = static_cast<std::ptrdiff_t>(r * in.length), end = static_cast<std::ptrdiff_t>((r + 1) * in.length);
    ids.push_back(std::vector<int32_t>(in.input_ids.begin() + begin, in.input_ids.begin() + end));
    mask.push_back(std::vector<int32_t>(in.attention_mask.begin() + begin, in.attention_mask.begin() + end));
  }
  return {{"length", in.length}, {"batch", in.batch}, {"input_ids", ids}, {"attention_mask", mask}};
}

}  // namespace

std::vector<GridSeries> run_python_peer(const std::string& peer, const std::string& model_path,
                                        const std::vector<std::string>& precisions, const GridOptions& options,
                                        const GridInputs& inputs) {
  const fs::path root = source_dir();
  const fs::path script = root / "tools" / "halfserve" / "peers" / "run_peer.py";
  if (!fs::exists(script)) throw Error("peer scripts not found at " + script.string() + " (set HALFSERVE_SOURCE_DIR)");
  const fs::path work = fs::temp_directory_path() / ("halfserve-peer-" + std::to_string(::getpid()) + "-" + peer);
  fs::create_directories(work);
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } cleanup{work};

  // The peer's Python environment (created on first use), unless HALFSERVE_PEER_PYTHON names a Python that has
  // the peer's packages already (a GPU machine's own PyTorch, for one).
  std::string python;
  if (const char* given = std::getenv("HALFSERVE_PEER_PYTHON"); given != nullptr && *given != '\0') {
    python = given;
  } else {
    const std::string group = peer == "tensorflow" ? "tf" : "peers";
    const ChildResult environment =
        run_child({"bash", (root / "scripts" / "python-env.sh").string(), group}, (work / "python").string());
    if (environment.exit_code != 0)
      throw Error("peer " + peer + ": its Python environment (scripts/python-env.sh " + group + ") could not be created" +
                  (environment.exit_code == 77 ? " (no PyPI access?)" : ""));
    python = trimmed(read_file_bounded((work / "python").string(), 4096));
  }

  json request = {{"precisions", precisions},
                  {"threads", options.engine.threads},
                  {"device", std::string(device_name(options.engine.device))},
                  {"seconds_per_cell", options.seconds_per_cell},
                  {"min_repetitions", options.min_repetitions},
                  {"max_repetitions", options.max_repetitions},
                  {"cells", json::array()},
                  {"check", batch_json(inputs.check)}};
  for (const auto& cell : inputs.cells) request["cells"].push_back(batch_json(cell));
  std::ofstream(work / "request.json") << request.dump();

  const ChildResult result = run_child({python, script.string(), "--peer", peer, "--model", model_path, "--request",
                                        (work / "request.json").string(), "--output", (work / "result.json").string()},
                                       "");
  if (result.exit_code != 0) throw Error("peer " + peer + " failed (exit " + std::to_string(result.exit_code) + ")");
  json answer;
  try {
    answer = json::parse(read_file_bounded((work / "result.json").string(), 256 << 20));
  } catch (const std::exception& e) {
    throw Error("peer " + peer + ": unreadable result: " + e.what());
  }
  std::vector<GridSeries> series;
  const json& reported = answer.at("precisions");
  for (const auto& precision : precisions) {  // in the order asked (fp32 first), not the JSON object's
    if (!reported.contains(precision)) continue;
    const json& body = reported.at(precision);
    GridSeries one;
    one.engine = peer;
    one.precision = precision;
    one.peak_rss = result.peak_rss;
    if (body.contains("skipped")) {
      one.skipped = body["skipped"].get<std::string>();
      series.push_back(std::move(one));
      continue;
    }
    one.description = body.value("description", peer);
    for (const auto& cell : body.at("cells")) {
      const int64_t length = cell.at("length").get<int64_t>(), batch = cell.at("batch").get<int64_t>();
      const auto matching = std::find_if(inputs.cells.begin(), inputs.cells.end(),
                                         [&](const InputBatch& in) { return in.length == length && in.batch == batch; });
      if (matching == inputs.cells.end()) continue;
      one.cells.push_back(summarize_cell(*matching, cell.at("samples_ms").get<std::vector<double>>()));
    }
    if (body.contains("check_label_ids"))
      for (const auto& row : body["check_label_ids"])
        for (const auto& label : row) one.check_labels.push_back(label.get<int32_t>());
    series.push_back(std::move(one));
  }
  return series;
}

}  // namespace halfserve::cli
