#pragma once

#include <atomic>
#include <cstddef>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/punctuation_stream.grpc.pb.h"
#include "serve/grpc_call_recorder.h"
#include "serve/request_threads.h"

namespace halfserve {

// halfserve.streaming.PunctuationService: one bidirectional stream per live transcript. Each piece is answered
// with what it settled, in order; the model work runs on the call threads (it waits for the batch scheduler), one
// piece of a stream at a time, never on gRPC's own threads. At most `max_streams` are open at once; past that a new
// stream ends at once with RESOURCE_EXHAUSTED.
class GrpcPunctuationService final : public streaming::PunctuationService::CallbackService {
 public:
  GrpcPunctuationService(ModelManager& models, ServingMetrics& metrics, RequestThreads& calls, size_t max_streams)
      : models_(models), recorder_(models, metrics), calls_(calls), max_streams_(max_streams) {}

  grpc::ServerBidiReactor<streaming::PunctuateStreamRequest, streaming::PunctuateStreamResponse>* PunctuateStream(
      grpc::CallbackServerContext* context) override;

 private:
  class Reactor;
  ModelManager& models_;
  CallRecorder recorder_;
  RequestThreads& calls_;
  size_t max_streams_;
  std::atomic<size_t> open_streams_{0};
};

}  // namespace halfserve
