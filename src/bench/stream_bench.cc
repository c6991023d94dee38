#include "halfserve/bench/stream_bench.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <mutex>
#include <sstream>
#include <thread>

#include "halfserve/bench/latency_grid.h"
#include "halfserve/punctuation_stream.grpc.pb.h"
#include "halfserve/util/error.h"
#include "halfserve/util/utf8.h"

namespace halfserve {

namespace {

using Clock = std::chrono::steady_clock;
using streaming::PunctuateStreamRequest;
using streaming::PunctuateStreamResponse;

// Unpunctuated Chinese as ASR gives it, cut two characters a word when no words are given.
constexpr const char* kDefaultText =
    "今天天气很好我们去公园玩吧如果你想安装这个软件包请使用下面的命令安装完成以后就可以运行它了"
    "这个问题我们明天再讨论吧你觉得怎么样我觉得没有问题那我们就这么定了会议在下午三点开始请大家准时参加"
    "系统启动以后会自动检查所有的设备如果发现错误它会在屏幕上显示一条消息并且记录在日志文件里";

std::vector<std::string> default_words() {
  std::vector<std::string> words;
  const std::string text = kDefaultText;
  std::string word;
  int characters = 0;
  for (size_t at = 0; at < text.size();) {
    char32_t codepoint = 0;
    const size_t length = decode_utf8(text, at, codepoint);
    word += text.substr(at, length);
    at += length;
    if (++characters == 2) {
      words.push_back(word);
      word.clear();
      characters = 0;
    }
  }
  if (!word.empty()) words.push_back(word);
  return words;
}

// What one stream saw.
struct StreamTally {
  std::vector<double> commit_ms, reply_ms, late_ms;
  int64_t pieces = 0, committing = 0, committed_bytes = 0, errors = 0;
  std::string first_error;

  void fail(const std::string& error) {
    if (errors++ == 0) first_error = error;
  }
};

std::shared_ptr<grpc::Channel> own_channel(const WireTarget& target) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per stream, as separate clients have
  const std::string host = target.host.find(':') != std::string::npos ? "[" + target.host + "]" : target.host;
  return grpc::CreateCustomChannel(host + ":" + std::to_string(target.port), grpc::InsecureChannelCredentials(),
                                   arguments);
}

// One stream: a word every 1/rate seconds from `offset` on, each reply timed; then a flush and the close.
StreamTally run_stream(const WireTarget& target, const StreamLoadOptions& options,
                       const std::vector<std::string>& words, size_t offset, Clock::time_point start) {
  StreamTally tally;
  auto stub = streaming::PunctuationService::NewStub(own_channel(target));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(static_cast<int64_t>(options.seconds + target.timeout_seconds)));
  auto call = stub->PunctuateStream(&context);
  const auto interval = std::chrono::duration<double>(1.0 / options.words_per_second);
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.seconds));
  for (int64_t i = 0;; ++i) {
    const auto due = start + std::chrono::duration_cast<Clock::duration>(interval * static_cast<double>(i));
    if (due >= end) break;
    std::this_thread::sleep_until(due);
    PunctuateStreamRequest request;
    if (i == 0) {
      request.set_model_name(target.model_name);
      request.set_window(options.window);
      request.set_stride(options.stride);
    }
    request.set_text(words[(offset + static_cast<size_t>(i)) % words.size()]);
    const auto sent = Clock::now();
    tally.late_ms.push_back(std::chrono::duration<double, std::milli>(sent - due).count());
    PunctuateStreamResponse reply;
    if (!call->Write(request) || !call->Read(&reply)) break;  // the status below says why
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
    ++tally.pieces;
    tally.reply_ms.push_back(ms);
    if (!reply.committed().empty()) {
      ++tally.committing;
      tally.committed_bytes += static_cast<int64_t>(reply.committed().size());
      tally.commit_ms.push_back(ms);
    }
  }
  call->WritesDone();
  for (PunctuateStreamResponse reply; call->Read(&reply);) tally.committed_bytes += static_cast<int64_t>(reply.committed().size());
  const grpc::Status status = call->Finish();
  if (!status.ok()) tally.fail("gRPC " + std::to_string(static_cast<int>(status.error_code())) + ": " + status.error_message());
  return tally;
}

std::string format_ms(double ms) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(ms < 10 ? 2 : 1) << ms << " ms";
  return out.str();
}

}  // namespace

StreamLoadResult run_stream_load(const WireTarget& target, const StreamLoadOptions& options) {
  if (target.protocol != WireTarget::Protocol::grpc)
    throw InvalidArgument("punctuation streams are timed over gRPC: give --target grpc://HOST:PORT");
  if (options.streams < 1) throw InvalidArgument("--streams must be at least 1");
  if (!(options.words_per_second > 0)) throw InvalidArgument("the word rate must be positive");
  if (!(options.seconds > 0)) throw InvalidArgument("the stream time must be positive");
  const std::vector<std::string> words = options.words.empty() ? default_words() : options.words;

  std::vector<StreamTally> tallies(static_cast<size_t>(options.streams));
  std::vector<std::thread> threads;
  const auto start = Clock::now() + std::chrono::milliseconds(200);  // every thread ready before the first word
  for (int s = 0; s < options.streams; ++s) {
    // Streams start a fraction of an interval apart, as independent speakers would, not all in one instant.
    const auto offset_start = start + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(s / (options.words_per_second * options.streams)));
    threads.emplace_back([&, s, offset_start] {
      try {
        tallies[static_cast<size_t>(s)] = run_stream(target, options, words, static_cast<size_t>(s) * 7, offset_start);
      } catch (const std::exception& error) {
        tallies[static_cast<size_t>(s)].fail(std::string("client error: ") + error.what());
      }
    });
  }
  for (auto& thread : threads) thread.join();

  StreamLoadResult result;
  result.streams = options.streams;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> commit_ms, reply_ms, late_ms;
  for (StreamTally& tally : tallies) {
    result.pieces += tally.pieces;
    result.committing_replies += tally.committing;
    result.committed_bytes += tally.committed_bytes;
    if (tally.errors > 0 && result.errors == 0) result.first_error = tally.first_error;
    result.errors += tally.errors;
    commit_ms.insert(commit_ms.end(), tally.commit_ms.begin(), tally.commit_ms.end());
    reply_ms.insert(reply_ms.end(), tally.reply_ms.begin(), tally.reply_ms.end());
    late_ms.insert(late_ms.end(), tally.late_ms.begin(), tally.late_ms.end());
  }
  if (!commit_ms.empty()) {
    result.commit_p50_ms = percentile(commit_ms, 0.5);
    result.commit_p90_ms = percentile(commit_ms, 0.9);
    result.commit_p99_ms = percentile(commit_ms, 0.99);
    result.commit_max_ms = *std::max_element(commit_ms.begin(), commit_ms.end());
  }
  if (!reply_ms.empty()) {
    result.reply_p50_ms = percentile(reply_ms, 0.5);
    result.reply_p99_ms = percentile(reply_ms, 0.99);
  }
  if (!late_ms.empty()) result.late_send_p99_ms = percentile(late_ms, 0.99);
  return result;
}

std::string format_stream_report(const StreamLoadResult& result, const StreamLoadOptions& options,
                                 const WireTarget& target) {
  std::ostringstream out;
  out << "Punctuation streams, " << wire_target_url(target) << " model " << target.model_name << ": "
      << result.streams << " streams × " << options.words_per_second << " words/s for " << options.seconds << " s"
      << (options.window > 0 ? ", window " + std::to_string(options.window) : std::string())
      << (options.stride > 0 ? ", stride " + std::to_string(options.stride) : std::string()) << "\n\n"
      << "| commit delay p50 | p90 | p99 | max | replies p50 | p99 | pieces | committing replies | errors |\n"
      << "|---|---|---|---|---|---|---|---|---|\n"
      << "| " << format_ms(result.commit_p50_ms) << " | " << format_ms(result.commit_p90_ms) << " | "
      << format_ms(result.commit_p99_ms) << " | " << format_ms(result.commit_max_ms) << " | "
      << format_ms(result.reply_p50_ms) << " | " << format_ms(result.reply_p99_ms) << " | " << result.pieces << " | "
      << result.committing_replies << " | " << result.errors << " |\n\n"
      << "Commit delay: from sending the piece that completes a word's look-ahead to receiving the reply that commits "
         "it (replies that committed text). The senders fell behind schedule by at most "
      << format_ms(result.late_send_p99_ms) << " (p99). Client machine: " << describe_machine() << ".\n";
  if (result.errors > 0) out << "- " << result.errors << " streams failed; first: " << result.first_error << "\n";
  return out.str();
}

}  // namespace halfserve
