#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "halfserve/bench/wire_bench.h"

// Live-transcript load on a running server's punctuation streams (gRPC halfserve.streaming.PunctuationService):
// many streams at once, each sending a word at a fixed rate the way an ASR system emits them, and the commit delay
// each sees — from sending the piece that completes a word's look-ahead to receiving the reply that commits it.
namespace halfserve {

struct StreamLoadOptions {
  int streams = 50;
  double words_per_second = 3;  // per stream
  double seconds = 30;          // sending time per stream; then each flushes and closes
  int64_t window = 0;           // 0: the server's streaming defaults
  int64_t stride = 0;
  std::vector<std::string> words;  // sent in order, round and round; empty: built-in Chinese text, two characters a word
};

struct StreamLoadResult {
  int streams = 0;
  int64_t pieces = 0;           // pieces sent (every one gets a reply)
  int64_t committing_replies = 0;  // replies that committed text
  int64_t committed_bytes = 0;
  int64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  double commit_p50_ms = 0, commit_p90_ms = 0, commit_p99_ms = 0, commit_max_ms = 0;  // committing replies only
  double reply_p50_ms = 0, reply_p99_ms = 0;                                          // every reply
  double late_send_p99_ms = 0;  // how far behind schedule the sender fell (a client that cannot keep the rate)
};

// Runs the load against a grpc:// target (throws InvalidArgument for another protocol). Never throws for a failed
// stream: failures are counted.
StreamLoadResult run_stream_load(const WireTarget& target, const StreamLoadOptions& options);

std::string format_stream_report(const StreamLoadResult& result, const StreamLoadOptions& options,
                                 const WireTarget& target);

}  // namespace halfserve
