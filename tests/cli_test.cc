// Runs the real halfserve CLI (tools/halfserve) end to end: help and usage errors, synth -> inspect -> convert ->
// predict on a tiny model, and the failures a user sees (exit code 1, a message on stderr, nothing on stdout).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "halfserve/engine/backend.h"
#include "halfserve/util/error.h"
#include "halfserve/format/frozen_model.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::Contains;

namespace fs = std::filesystem;
using halfserve::testing::CommandResult;
using halfserve::testing::run_cli;
using nlohmann::json;

std::string quoted(const fs::path& path) {
  std::string text = "'";  // built by appending: GCC 12 warns falsely (-Wrestrict) on "'" + string
  text += path.string();
  text += "'";
  return text;
}

std::string describe(const CommandResult& result) {
  return "exit " + std::to_string(result.exit_code) + "\n--- stdout:\n" + result.out.substr(0, 2000) +
         "\n--- stderr:\n" + result.err.substr(0, 2000);
}

std::vector<std::string> folder_listing(const fs::path& folder) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The shape of a nested JSON array, following the first element at each level (and checking every sibling has
// the same length, so a ragged reply fails).
std::vector<size_t> json_shape(const json& value) {
  std::vector<size_t> shape;
  const json* level = &value;
  while (level->is_array()) {
    shape.push_back(level->size());
    for (const auto& item : *level)
      if (item.is_array() != (*level)[0].is_array() || (item.is_array() && item.size() != (*level)[0].size()))
        ADD_FAILURE() << "ragged JSON array";
    if (level->empty()) break;
    level = &(*level)[0];
  }
  return shape;
}

// One tiny model (1 layer, hidden 32, vocabulary 300, 64 positions), written once by `synth` for the suite.
class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new halfserve::testing::TempDir();
    model_ = new fs::path(*dir_ / "tiny.safetensors");
    synth_result_ = new CommandResult(run_cli("synth -o " + quoted(*model_) +
                                              " --layers 1 --hidden 32 --heads 4 --ffn 64 --vocab 300 --positions 64"));
  }
  static void TearDownTestSuite() {
    delete synth_result_;
    delete model_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_EQ(synth_result_->exit_code, 0) << describe(*synth_result_);
    ASSERT_TRUE(fs::exists(*model_));
  }

  static CommandResult predict(const std::string& body, const std::string& extra = "") {
    return run_cli("predict --model " + quoted(*model_) + " " + extra, body);
  }

  // The command must fail with exit code 1, say why on stderr (mentioning every fragment) and print nothing.
  static void expect_failure(const CommandResult& result, const std::vector<std::string>& fragments) {
    EXPECT_EQ(result.exit_code, 1) << describe(result);
    EXPECT_EQ(result.out, "") << "a failed command printed a reply";
    for (const auto& fragment : fragments) EXPECT_TRUE(Contains(result.err, fragment));
  }

  halfserve::testing::TempDir work_;  // per-test scratch folder
  static halfserve::testing::TempDir* dir_;
  static fs::path* model_;
  static CommandResult* synth_result_;
};

halfserve::testing::TempDir* CliTest::dir_ = nullptr;
fs::path* CliTest::model_ = nullptr;
CommandResult* CliTest::synth_result_ = nullptr;

const char* const kTwoRows =
    R"({"inputs": {"input_ids": [[2, 10, 11, 3], [2, 12, 3, 0]], "attention_mask": [[1, 1, 1, 1], [1, 1, 1, 0]]}})";

TEST(CliHelpTest, EverySubcommandHasHelp) {
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"synth", "--layers"}, {"convert", "--precision"}, {"inspect", "--json"}, {"predict", "--model"},
      {"bench", "--batches"}};
  for (const auto& [command, flag] : commands) {
    SCOPED_TRACE(command);
    const CommandResult result = run_cli(command + " --help");
    EXPECT_EQ(result.exit_code, 0) << describe(result);
    EXPECT_TRUE(Contains(result.out + result.err, flag));
  }
  const CommandResult top = run_cli("--help");
  EXPECT_EQ(top.exit_code, 0) << describe(top);
  for (const auto& [command, flag] : commands) EXPECT_TRUE(Contains(top.out + top.err, command));
}

TEST(CliHelpTest, VersionFlag) {
  const CommandResult result = run_cli("--version");
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(Contains(result.out + result.err, "halfserve "));
}

TEST(CliHelpTest, UsageErrorsExitWithTwo) {
  halfserve::testing::TempDir dir;
  const std::vector<std::string> bad = {
      "",                                                       // no subcommand
      "frobnicate",                                             // unknown subcommand
      "synth",                                                  // missing required -o
      "synth -o " + quoted(dir / "x") + " --bogus-flag",        // unknown flag
      "synth -o " + quoted(dir / "x") + " --layers 0",          // not positive
      "synth -o " + quoted(dir / "x") + " --hidden many",       // not a number
      "inspect",                                                // missing FILE
      "inspect " + quoted(dir / "x") + " --yaml",               // unknown flag
      "convert " + quoted(dir / "x") + " -o " + quoted(dir / "y") + " --precision fp8",
      "convert " + quoted(dir / "x") + " -o " + quoted(dir / "y") + " --precision FP16",
      "convert " + quoted(dir / "x") + " -o " + quoted(dir / "y") + " --from onnx",
      "predict --model " + quoted(dir / "x") + " --precision double",
      "predict --model " + quoted(dir / "x") + " --device tpu",
      "predict --model " + quoted(dir / "x") + " --nonsense",
      "bench --model " + quoted(dir / "x") + " --precisions fp32,fp8",
      "bench --model " + quoted(dir / "x") + " --batches 1,0",
      "bench --model " + quoted(dir / "x") + " --lengths 8,x",
  };
  for (const auto& args : bad) {
    SCOPED_TRACE(args);
    const CommandResult result = run_cli(args);
    EXPECT_EQ(result.exit_code, 2) << describe(result);
    EXPECT_FALSE(result.err.empty()) << "a usage error should say what is wrong";
  }
  EXPECT_TRUE(fs::is_empty(dir.path())) << "a usage error wrote a file";
}

TEST_F(CliTest, InspectText) {
  const CommandResult result = run_cli("inspect " + quoted(*model_));
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(Contains(result.out, model_->string()));
  EXPECT_TRUE(Contains(result.out, "bert.embeddings.word_embeddings.weight"));
  EXPECT_TRUE(Contains(result.out, "[300, 32]"));
  EXPECT_TRUE(Contains(result.out, "classifier.weight"));
}

TEST_F(CliTest, InspectJson) {
  const CommandResult result = run_cli("inspect " + quoted(*model_) + " --json");
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  json info;
  ASSERT_NO_THROW(info = json::parse(result.out)) << result.out;
  const json& arch = info.at("architecture");
  EXPECT_EQ(arch.at("num_layers"), 1);
  EXPECT_EQ(arch.at("hidden_size"), 32);
  EXPECT_EQ(arch.at("num_heads"), 4);
  EXPECT_EQ(arch.at("intermediate_size"), 64);
  EXPECT_EQ(arch.at("vocab_size"), 300);
  EXPECT_EQ(arch.at("max_positions"), 64);
  EXPECT_EQ(info.at("file_size"), fs::file_size(*model_));
  EXPECT_EQ(info.at("labels").size(), 6u);
  EXPECT_EQ(info.at("labels")[0].at("name"), "O");
  EXPECT_EQ(info.at("labels")[1].at("mark"), "，");
  EXPECT_EQ(info.at("provenance").at("precision"), "fp32");
  EXPECT_EQ(info.at("provenance").at("source_format"), "synth");
  // 5 embedding tensors, 16 for the one layer, 2 for the head.
  ASSERT_EQ(info.at("tensors").size(), 23u);
  for (const auto& tensor : info.at("tensors")) EXPECT_EQ(tensor.at("dtype"), "F32") << tensor.dump();
  ASSERT_GE(info.at("signatures").size(), 1u);
  EXPECT_EQ(info.at("signatures")[0].at("name"), "serving_default");
}

TEST_F(CliTest, SynthIsDeterministicPerSeed) {
  const std::string args = " --layers 1 --hidden 32 --heads 4 --ffn 64 --vocab 300 --positions 64";
  ASSERT_EQ(run_cli("synth -o " + quoted(work_ / "a") + args + " --seed 5").exit_code, 0);
  ASSERT_EQ(run_cli("synth -o " + quoted(work_ / "b") + args + " --seed 5").exit_code, 0);
  ASSERT_EQ(run_cli("synth -o " + quoted(work_ / "c") + args + " --seed 6").exit_code, 0);
  const FrozenModel a = load_frozen_model((work_ / "a").string());
  const FrozenModel b = load_frozen_model((work_ / "b").string());
  const FrozenModel c = load_frozen_model((work_ / "c").string());
  const auto bytes = [](const FrozenModel& m) {
    const auto data = m.tensors.at("bert.encoder.layer.0.attention.self.query.weight").data;
    return std::vector<std::byte>(data.begin(), data.end());
  };
  EXPECT_EQ(bytes(a), bytes(b));
  EXPECT_NE(bytes(a), bytes(c));
}

TEST_F(CliTest, ConvertToHalfPrecision) {
  for (const std::string precision : {"fp16", "bf16"}) {
    SCOPED_TRACE(precision);
    const fs::path output = work_ / (precision + ".safetensors");
    const CommandResult result =
        run_cli("convert " + quoted(*model_) + " -o " + quoted(output) + " --precision " + precision);
    ASSERT_EQ(result.exit_code, 0) << describe(result);
    ASSERT_TRUE(fs::exists(output));
    EXPECT_LT(fs::file_size(output), fs::file_size(*model_));
    const FrozenModel converted = load_frozen_model(output.string());
    EXPECT_EQ(converted.metadata.provenance.precision, precision == "fp16" ? Precision::fp16 : Precision::bf16);
    const DType half = precision == "fp16" ? DType::f16 : DType::bf16;
    EXPECT_EQ(converted.tensors.at("bert.encoder.layer.0.attention.self.query.weight").dtype, half);
    EXPECT_EQ(converted.tensors.at("bert.embeddings.word_embeddings.weight").dtype, half);
    EXPECT_EQ(converted.tensors.at("bert.embeddings.word_embeddings.weight").shape, (Shape{300, 32}));
    const CommandResult inspect = run_cli("inspect " + quoted(output) + " --json");
    ASSERT_EQ(inspect.exit_code, 0) << describe(inspect);
    EXPECT_EQ(json::parse(inspect.out).at("provenance").at("precision"), precision);
  }
  EXPECT_EQ(folder_listing(work_.path()), (std::vector<std::string>{"bf16.safetensors", "fp16.safetensors"}));
}

TEST_F(CliTest, PredictColumnRequest) {
  const CommandResult result = predict(kTwoRows);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  json reply;
  ASSERT_NO_THROW(reply = json::parse(result.out)) << result.out;
  ASSERT_EQ(reply.size(), 1u);
  const json& outputs = reply.at("outputs");
  ASSERT_TRUE(outputs.is_object());
  EXPECT_EQ(outputs.size(), 2u);
  const json& logits = outputs.at("logits");
  const json& labels = outputs.at("label_ids");
  EXPECT_EQ(json_shape(logits), (std::vector<size_t>{2, 4, 6}));
  EXPECT_EQ(json_shape(labels), (std::vector<size_t>{2, 4}));
  // label_ids is the argmax of logits.
  for (size_t b = 0; b < 2; ++b)
    for (size_t t = 0; t < 4; ++t) {
      const auto row = logits[b][t].get<std::vector<double>>();
      const auto argmax = std::max_element(row.begin(), row.end()) - row.begin();
      EXPECT_EQ(labels[b][t].get<int64_t>(), argmax) << b << "," << t;
    }
}

TEST_F(CliTest, PredictRowRequestAndRequestFile) {
  const std::string body = R"({"instances": [{"input_ids": [2, 10, 3], "attention_mask": [1, 1, 1]}, )"
                           R"({"input_ids": [2, 11, 3], "attention_mask": [1, 1, 0]}]})";
  const CommandResult result = predict(body);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  const json reply = json::parse(result.out);
  const json& predictions = reply.at("predictions");
  ASSERT_EQ(predictions.size(), 2u);
  for (const auto& prediction : predictions) {
    EXPECT_EQ(json_shape(prediction.at("logits")), (std::vector<size_t>{3, 6}));
    EXPECT_EQ(json_shape(prediction.at("label_ids")), (std::vector<size_t>{3}));
  }
  // The same request from a file gives the same reply.
  const fs::path request = work_ / "request.json";
  std::ofstream(request) << body;
  const CommandResult from_file = predict("", "--input " + quoted(request));
  ASSERT_EQ(from_file.exit_code, 0) << describe(from_file);
  EXPECT_EQ(from_file.out, result.out);
}

TEST_F(CliTest, PredictOnlyLastHiddenState) {
  const CommandResult result = predict(kTwoRows, "--output last_hidden_state");
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  const json reply = json::parse(result.out);
  ASSERT_EQ(reply.size(), 1u);
  const json& outputs = reply.at("outputs");
  ASSERT_TRUE(outputs.is_array()) << "one output is returned as a bare value";
  EXPECT_EQ(json_shape(outputs), (std::vector<size_t>{2, 4, 32}));
  EXPECT_FALSE(Contains(result.out, "logits"));
  EXPECT_FALSE(Contains(result.out, "label_ids"));
}

TEST_F(CliTest, PredictOnlyLabelIds) {
  const CommandResult full = predict(kTwoRows);
  const CommandResult ids = predict(kTwoRows, "--output label_ids");
  ASSERT_EQ(full.exit_code, 0) << describe(full);
  ASSERT_EQ(ids.exit_code, 0) << describe(ids);
  EXPECT_EQ(json::parse(ids.out).at("outputs"), json::parse(full.out).at("outputs").at("label_ids"));
}

TEST_F(CliTest, PredictWithHalfPrecisionCompute) {
  const CommandResult result = predict(kTwoRows, "--precision fp16");
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  const json reply = json::parse(result.out);
  EXPECT_EQ(json_shape(reply.at("outputs").at("logits")), (std::vector<size_t>{2, 4, 6}));
}

TEST_F(CliTest, PredictIdOutsideVocabulary) {
  expect_failure(predict(R"({"inputs": [[2, 300, 3]]})"), {"300", "vocabulary"});
  expect_failure(predict(R"({"inputs": [[2, -1, 3]]})"), {"-1", "vocabulary"});
}

TEST_F(CliTest, PredictRaggedRequest) {
  expect_failure(predict(R"({"inputs": {"input_ids": [[2, 10, 3], [2, 3]]}})"), {"ragged"});
  expect_failure(predict(R"({"instances": [[2, 10, 3], [2, 3]]})"), {"ragged"});
}

TEST_F(CliTest, PredictLengthBeyondMaxPositions) {
  std::string ids = "2";
  for (int i = 1; i < 65; ++i) ids += ",5";
  expect_failure(predict(R"({"inputs": [[)" + ids + "]]}"), {"65", "64"});
  // Exactly the maximum is fine.
  std::string ok = "2";
  for (int i = 1; i < 64; ++i) ok += ",5";
  const CommandResult at_limit = predict(R"({"inputs": [[)" + ok + "]]}");
  EXPECT_EQ(at_limit.exit_code, 0) << describe(at_limit);
}

TEST_F(CliTest, PredictMalformedJson) {
  expect_failure(predict(R"({"inputs": [[2, 10, 3]])"), {"malformed JSON"});
  expect_failure(predict(""), {"malformed JSON"});
}

TEST_F(CliTest, PredictUnknownInputName) {
  expect_failure(predict(R"({"inputs": {"input_ids": [[2, 3]], "pixel_values": [[1, 1]]}})"),
                 {"pixel_values", "inputs:", "input_ids", "attention_mask", "token_type_ids"});
}

TEST_F(CliTest, PredictOtherBadRequests) {
  expect_failure(predict(R"({"inputs": {"input_ids": [[2, 3, 4, 5]], "attention_mask": [[1, 1], [1, 1]]}})"),
                 {"attention_mask"});
  expect_failure(predict(R"({"inputs": {"input_ids": [[2, 3]], "attention_mask": [[1, 2]]}})"), {"attention_mask"});
  expect_failure(predict(R"({"inputs": [[2, 1.5]]})"), {"not an integer"});
  expect_failure(predict(R"({"signature_name": "nope", "inputs": [[2]]})"), {"nope"});
  expect_failure(predict(R"({"inputs": [[2, 3]]})", "--output attention_weights"), {"attention_weights"});
  expect_failure(predict(R"({"inputs": [[2, 3]]})", "--input " + quoted(work_ / "missing.json")), {"missing.json"});
}

TEST_F(CliTest, MissingOrBrokenModelFile) {
  expect_failure(run_cli("inspect " + quoted(work_ / "absent.safetensors")), {"absent.safetensors"});
  const fs::path junk = work_ / "junk.safetensors";
  std::ofstream(junk) << "definitely not a model";
  expect_failure(run_cli("inspect " + quoted(junk)), {"junk.safetensors"});
  expect_failure(run_cli("predict --model " + quoted(junk), kTwoRows), {"junk.safetensors"});
}

TEST_F(CliTest, FailedConvertLeavesNothingBehind) {
  // A random non-model file.
  const fs::path source = work_ / "random.bin";
  {
    std::mt19937 random(11);
    std::ofstream out(source, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(random() & 0xff));
  }
  const fs::path out_dir = work_ / "out";
  fs::create_directories(out_dir);
  const fs::path output = out_dir / "model.safetensors";
  const CommandResult result = run_cli("convert " + quoted(source) + " -o " + quoted(output) + " --precision fp16");
  expect_failure(result, {"random.bin"});
  EXPECT_TRUE(fs::is_empty(out_dir)) << "left: " << ::testing::PrintToString(folder_listing(out_dir));

  // A file that looks like safetensors but is cut short, and a frozen file forced through the HF importer.
  const fs::path truncated = work_ / "truncated.safetensors";
  fs::copy_file(*model_, truncated);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  expect_failure(run_cli("convert " + quoted(truncated) + " -o " + quoted(output)), {"truncated.safetensors"});
  EXPECT_TRUE(fs::is_empty(out_dir)) << "left: " << ::testing::PrintToString(folder_listing(out_dir));
  const CommandResult forced = run_cli("convert " + quoted(source) + " -o " + quoted(output) + " --from frozen");
  expect_failure(forced, {"random.bin"});
  EXPECT_TRUE(fs::is_empty(out_dir)) << "left: " << ::testing::PrintToString(folder_listing(out_dir));

  // A failed convert over an existing output keeps the old file intact.
  ASSERT_EQ(run_cli("convert " + quoted(*model_) + " -o " + quoted(output)).exit_code, 0);
  const auto before = fs::file_size(output);
  expect_failure(run_cli("convert " + quoted(source) + " -o " + quoted(output)), {"random.bin"});
  EXPECT_EQ(folder_listing(out_dir), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(fs::file_size(output), before);
  EXPECT_NO_THROW(load_frozen_model(output.string()));
}

TEST_F(CliTest, BenchRunsOnATinyGrid) {
  const CommandResult result = run_cli("bench --model " + quoted(*model_) +
                                       " --precisions fp32 --lengths 8 --batches 1,2 --seconds-per-cell 0 --min-reps 1 "
                                       "--max-reps 1 --threads 1");
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_FALSE(result.out.empty());
}

TEST_F(CliTest, BenchGridFlagsGivenTwiceTakeTheLastAndContentionIsReported) {
  // scripts/main.sh appends $HALFSERVE_BENCH_FLAGS to its own grid: the later flags win.
  const CommandResult result = run_cli("bench --model " + quoted(*model_) +
                                       " --precisions fp32 --lengths 16,32 --batches 4,8 --lengths 8 --batches 1 "
                                       "--seconds-per-cell 0 --min-reps 1 --max-reps 1 --threads 1 --contend 1");
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(Contains(result.out, "| fp32 frozen, len 8 |"));
  EXPECT_FALSE(Contains(result.out, "len 16"));
  EXPECT_TRUE(Contains(result.out, "| model \\ batch | 1 |\n"));
  EXPECT_TRUE(Contains(result.out, "under contention from 1 busy thread of other processes"));
}

}  // namespace
}  // namespace halfserve

namespace halfserve {
namespace {

// Without a usable GPU, every command's --device cuda is a one-line error naming the device, exit 1 — serve
// included, which must not start listening with nothing it can load.
TEST_F(CliTest, DeviceCudaWithoutAGpuIsAClearError) {
  try {
    halfserve::create_backend({halfserve::Device::cuda, 0});
    GTEST_SKIP() << "a CUDA device is present";
  } catch (const halfserve::Error&) {
  }
  const fs::path base = work_ / "models";
  fs::create_directories(base / "1");
  fs::copy_file(*model_, base / "1" / "model.safetensors");
  expect_failure(predict(kTwoRows, "--device cuda"), {"device cuda", "--device cpu"});
  expect_failure(run_cli("serve --model_name m --model_base_path " + quoted(base) + " --port 0 --rest_api_port 0 --device cuda"),
                 {"device cuda", "--device cpu"});
  expect_failure(run_cli("bench --model " + quoted(*model_) + " --device cuda --lengths 8 --batches 1"), {"device cuda"});
}

}  // namespace
}  // namespace halfserve

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

namespace halfserve {
namespace {

// Real Chinese through the shipped model, one text per line: a blank line, a line with marks to strip, a last line
// without its newline.
const char* const kStreamInput =
    "今天早上我六点就起床了因为要赶第一班地铁去公司开会会议讨论了下个季度的产品计划大家对新功能的上线时间有不同的看法"
    "产品经理希望尽快发布而工程师们认为测试还不够充分应该再等两周最后老板决定先在一个城市试点\n"
    "\n"
    "你明天有空吗？我们可以一起去图书馆看书，顺便讨论一下考试的安排。\n"
    "这个软件包提供了命令行工具和图形界面用户可以根据自己的需要选择安装哪些组件如果安装过程中出现错误请先检查网络连接";

// punctuate --stream prints what punctuate prints for the same lines, at the same window and stride.
TEST(PunctuateStreamCliTest, SameOutputAsOfflinePunctuate) {
  for (const std::string window_stride : {"--window 34 --stride 8", "--window 64 --stride 31"}) {
    const CommandResult offline = run_cli("punctuate --language zh " + window_stride, kStreamInput);
    ASSERT_EQ(offline.exit_code, 0) << describe(offline);
    const CommandResult streamed = run_cli("punctuate --stream --language zh " + window_stride, kStreamInput);
    ASSERT_EQ(streamed.exit_code, 0) << describe(streamed);
    EXPECT_EQ(streamed.out, offline.out);
    EXPECT_EQ(std::count(streamed.out.begin(), streamed.out.end(), '\n'), 4);
    EXPECT_GT(streamed.out.size(), std::string(kStreamInput).size()) << "marks were placed";
  }
  // The streaming defaults (window 64, stride 16) and what the command says about them.
  const CommandResult defaults = run_cli("punctuate --stream --language zh", kStreamInput);
  ASSERT_EQ(defaults.exit_code, 0) << describe(defaults);
  EXPECT_EQ(defaults.out, run_cli("punctuate --language zh --window 64 --stride 16", kStreamInput).out);
  EXPECT_TRUE(Contains(defaults.err, "window 64, stride 16: a token waits for at most 61 tokens after it"));

  const CommandResult bad = run_cli("punctuate --stream --language zh", "今天\n好\xff吧\n");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(Contains(bad.err, "line 2 is not valid UTF-8")) << bad.err;
  const std::string invalid = "好\xff\xe5\xa5吧\n\xe5";
  const CommandResult replaced = run_cli("punctuate --stream --replace-invalid --language zh", invalid);
  ASSERT_EQ(replaced.exit_code, 0) << describe(replaced);
  EXPECT_EQ(replaced.out, run_cli("punctuate --replace-invalid --language zh --window 64 --stride 16", invalid).out);
  EXPECT_EQ(run_cli("punctuate --stream --keep-existing --language zh", "今天").exit_code, 2);
}

// Output comes while the input is still open: after enough of a line, its settled start is printed before any
// newline or end of input.
TEST(PunctuateStreamCliTest, PrintsSettledTextBeforeTheInputEnds) {
  int to_child[2], from_child[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(from_child), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    dup2(to_child[0], STDIN_FILENO);
    dup2(from_child[1], STDOUT_FILENO);
    for (const int fd : {to_child[0], to_child[1], from_child[0], from_child[1]}) close(fd);
    execl(HALFSERVE_CLI_PATH, HALFSERVE_CLI_PATH, "punctuate", "--stream", "--language", "zh", "--window", "18",
          "--stride", "4", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  // 60 characters, no newline: the first 16-token window is whole, so its first tokens are settled.
  const std::string first = "今天早上我六点就起床了因为要赶第一班地铁去公司开会会议讨论了下个季度的产品计划大家对新功能的上线时间有不同的看法";
  ASSERT_EQ(write(to_child[1], first.data(), first.size()), static_cast<ssize_t>(first.size()));
  std::string early;
  pollfd readable{from_child[0], POLLIN, 0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (early.empty() && std::chrono::steady_clock::now() < deadline) {
    if (poll(&readable, 1, 1000) <= 0) continue;
    char buffer[4096];
    const ssize_t got = read(from_child[0], buffer, sizeof buffer);
    if (got <= 0) break;
    early.append(buffer, static_cast<size_t>(got));
  }
  close(to_child[1]);  // end of input: the rest is flushed
  std::string rest;
  char buffer[4096];
  for (ssize_t got; (got = read(from_child[0], buffer, sizeof buffer)) > 0;) rest.append(buffer, static_cast<size_t>(got));
  close(from_child[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(early.empty()) << "nothing printed while the line was still open";
  EXPECT_EQ(early + rest, run_cli("punctuate --language zh --window 18 --stride 4", first).out);
}

}  // namespace
}  // namespace halfserve
