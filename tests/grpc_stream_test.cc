// halfserve.streaming.PunctuationService over real gRPC: a stream's replies, concatenated, equal offline
// punctuation of the whole text with the same window and stride; pieces split anywhere; a flush ends an utterance;
// closing the stream flushes; bad input ends only its own stream with a message; past the stream cap a new stream
// is refused.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include "halfserve/engine/bert_model.h"
#include "halfserve/serve/grpc_server.h"
#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/punctuation_stream.grpc.pb.h"
#include "halfserve/text/punctuator.h"
#include "test_support.h"

namespace halfserve {
namespace {

namespace fs = std::filesystem;
using streaming::PunctuateStreamRequest;
using streaming::PunctuateStreamResponse;
using testing::Contains;

constexpr int64_t kWindow = 16, kStride = 8;

// The tiny model over the generated 21128-token vocabulary (CJK ideographs included), so Chinese text tokenizes.
FrozenModel cjk_model() { return testing::tiny_model(5, 21128, 1); }

class GrpcStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "1");
    save_frozen_model(cjk_model(), (dir_ / "1" / "model.safetensors").string());
    ModelManagerOptions options;
    options.poll_seconds = 0;
    options.metrics = &metrics_;
    models_ = std::make_unique<ModelManager>(std::vector<ServedModelConfig>{{"punct", dir_.path().string(), {}, {}}},
                                             options);
    models_->start();
    server_ = std::make_unique<GrpcServer>(*models_, metrics_, "127.0.0.1:0", 64 << 20);
    server_->start();
    stub_ = streaming::PunctuationService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->shutdown(std::chrono::milliseconds(1000));
    models_->stop();
  }

  static std::string offline(const std::string& text) {
    Punctuator punctuator(BertModel::from_model(cjk_model(), {}), {kWindow, kStride, 8, false});
    return punctuator.punctuate({text})[0];
  }

  // Sends the pieces (the last with flush unless `close_instead`), then closes; returns every reply.
  std::pair<grpc::Status, std::vector<PunctuateStreamResponse>> stream(const std::vector<std::string>& pieces,
                                                                       bool close_instead = false,
                                                                       const std::string& model = "punct") {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto call = stub_->PunctuateStream(&context);
    std::vector<PunctuateStreamResponse> replies;
    for (size_t i = 0; i < pieces.size(); ++i) {
      PunctuateStreamRequest request;
      if (i == 0) {
        request.set_model_name(model);
        request.set_window(kWindow);  // [CLS] and [SEP] included, as PunctuatorOptions counts
        request.set_stride(kStride);
      }
      request.set_text(pieces[i]);
      request.set_flush(!close_instead && i + 1 == pieces.size());
      if (!call->Write(request)) break;
      PunctuateStreamResponse reply;
      if (!call->Read(&reply)) break;  // one reply per piece, in order
      replies.push_back(reply);
    }
    call->WritesDone();
    for (PunctuateStreamResponse reply; call->Read(&reply);) replies.push_back(reply);
    return {call->Finish(), replies};
  }

  static std::string committed(const std::vector<PunctuateStreamResponse>& replies) {
    std::string text;
    for (const auto& reply : replies) text += reply.committed();
    return text;
  }

  testing::TempDir dir_;
  ServingMetrics metrics_;
  std::unique_ptr<ModelManager> models_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<streaming::PunctuationService::Stub> stub_;
};

// `text` cut at random byte positions (UTF-8 characters split too).
std::vector<std::string> random_pieces(const std::string& text, std::mt19937& random) {
  std::vector<std::string> pieces;
  for (size_t at = 0; at < text.size();) {
    const size_t length = std::uniform_int_distribution<size_t>(1, 12)(random);
    pieces.push_back(text.substr(at, length));
    at += length;
  }
  return pieces;
}

const std::string kText =
    "今天天气很好我们去公园玩吧如果你想安装这个软件包请使用下面的命令安装完成以后就可以运行它了"
    "你知道吗这个问题很难回答我们明天再讨论好不好";

TEST_F(GrpcStreamTest, CommittedTextEqualsOfflinePunctuation) {
  std::mt19937 random(7);
  for (int trial = 0; trial < 3; ++trial) {
    const auto [status, replies] = stream(random_pieces(kText, random));
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(committed(replies), offline(kText));
    ASSERT_FALSE(replies.empty());
    EXPECT_TRUE(replies.back().final());
    EXPECT_EQ(replies.back().pending_bytes(), 0);
    EXPECT_EQ(replies.back().model_version(), "1");
  }
}

TEST_F(GrpcStreamTest, WordsAreCommittedBeforeTheEndAndClosingFlushes) {
  std::vector<std::string> pieces;
  for (size_t at = 0; at < kText.size(); at += 3) pieces.push_back(kText.substr(at, 3));  // a character at a time
  const auto [status, replies] = stream(pieces, /*close_instead=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(committed(replies), offline(kText));
  // Text settled while the stream went on, long before it ended.
  size_t early = 0;
  for (size_t i = 0; i + 1 < pieces.size(); ++i) early += replies[i].committed().size();
  EXPECT_GT(early, kText.size() / 2);
  size_t words = 0;
  for (const auto& reply : replies) {
    for (const auto& word : reply.words()) {
      EXPECT_FALSE(word.label().empty());
      EXPECT_GT(word.probability(), 0.0f);
      EXPECT_LE(word.probability(), 1.0f);
      ++words;
    }
  }
  EXPECT_EQ(words, kText.size() / 3);  // one word per ideograph
}

TEST_F(GrpcStreamTest, BadInputEndsOnlyItsOwnStream) {
  auto [status, replies] = stream({"今天天气", std::string("\xff\xfe"), "很好"});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(status.error_message(), "UTF-8")) << status.error_message();
  std::tie(status, replies) = stream({std::string((1 << 20) + 1, 'a')});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(status.error_message(), "over the limit")) << status.error_message();
  // A word that never ends cannot commit: past 1 MiB uncommitted the stream asks for a flush.
  std::tie(status, replies) = stream({std::string(600000, 'a'), std::string(600000, 'a')}, true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(status.error_message(), "not yet committed")) << status.error_message();
  std::tie(status, replies) = stream({"今天"}, false, "nope");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Contains(status.error_message(), "nope"));
  // The server goes on serving streams.
  std::tie(status, replies) = stream({kText});
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(committed(replies), offline(kText));
}

TEST_F(GrpcStreamTest, ManyStreamsAtOnceEachGetTheirOwnText) {
  std::vector<std::thread> clients;
  std::vector<std::string> results(16), expected(16);
  for (size_t c = 0; c < results.size(); ++c) {
    const std::string text = kText.substr(0, 3 * (10 + 4 * c));
    expected[c] = offline(text);
    clients.emplace_back([&, c, text] {
      std::mt19937 random(static_cast<unsigned>(c));
      const auto [status, replies] = stream(random_pieces(text, random));
      if (status.ok()) results[c] = committed(replies);
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(results, expected);
}

}  // namespace
}  // namespace halfserve
