#include "serve/grpc_punctuation_service.h"

#include <memory>
#include <optional>

#include "serve/punctuation_stream.h"

namespace halfserve {

using streaming::PunctuateStreamRequest;
using streaming::PunctuateStreamResponse;

// One stream: read a piece, run it on a call thread, write its reply, read the next. Only one of these steps is in
// flight at a time, so the stream's state needs no lock.
class GrpcPunctuationService::Reactor final
    : public grpc::ServerBidiReactor<PunctuateStreamRequest, PunctuateStreamResponse> {
 public:
  explicit Reactor(GrpcPunctuationService& service) : service_(service) {
    if (++service_.open_streams_ > service_.max_streams_) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "the server holds its limit of " + std::to_string(service_.max_streams_) +
                              " open punctuation streams: retry later"));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    end_of_input_ = !ok;  // the client closed its side: what is left is flushed
    if (!service_.calls_.enqueue([this] { answer(); }))
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many calls waiting; retry later"));
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    if (end_of_input_) return Finish(grpc::Status::OK);
    StartRead(&request_);
  }

  void OnDone() override {
    --service_.open_streams_;
    delete this;
  }

 private:
  // On a call thread: the piece (or the end of input) through the stream, and its reply on the way.
  void answer() {
    if (end_of_input_ && !stream_) return Finish(grpc::Status::OK);  // nothing was ever sent
    const std::string& model = stream_ ? stream_->served().model_name() : request_.model_name();
    response_.Clear();
    const grpc::Status status = service_.recorder_.run(model, "stream", [this] { step(); });
    if (!status.ok()) return Finish(status);
    StartWrite(&response_);
  }

  void step() {
    if (!stream_) open();
    const StreamCommit commit = end_of_input_ ? stream_->flush() : stream_->take(request_.text(), request_.flush());
    response_.set_committed(std::move(commit.text));
    for (const CommittedWord& word : commit.words) {
      streaming::CommittedWord& out = *response_.add_words();
      out.set_text(word.text);
      out.set_label(word.label);
      out.set_mark(word.mark);
      out.set_probability(word.probability);
    }
    response_.set_final(end_of_input_ || request_.flush());
    response_.set_pending_bytes(static_cast<int64_t>(stream_->pending_bytes()));
    response_.set_model_version(std::to_string(stream_->served().version()));
  }

  // From the first message: the model version, held for the stream's life, and the stream's window and stride.
  void open() {
    const std::optional<int64_t> version =
        request_.model_version() > 0 ? std::optional<int64_t>(request_.model_version()) : std::nullopt;
    StreamingOptions options;
    if (request_.window() > 0) options.window = request_.window();
    if (request_.stride() > 0) options.stride = request_.stride();
    stream_ = std::make_unique<PunctuationStream>(service_.models_.find(request_.model_name(), version), options);
  }

  GrpcPunctuationService& service_;
  PunctuateStreamRequest request_;
  PunctuateStreamResponse response_;
  std::unique_ptr<PunctuationStream> stream_;
  bool end_of_input_ = false;
};

grpc::ServerBidiReactor<PunctuateStreamRequest, PunctuateStreamResponse>* GrpcPunctuationService::PunctuateStream(
    grpc::CallbackServerContext*) {
  return new Reactor(*this);
}

}  // namespace halfserve
