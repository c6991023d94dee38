#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "halfserve/serve/model_manager.h"
#include "halfserve/text/streaming_punctuator.h"

namespace halfserve {

// Text a stream may hold that is not yet committed, and the largest piece it takes at once: a piece is at most one
// ASR emission, and what waits is at most a window of tokens and a partial word, so more is a client error.
inline constexpr size_t kMaxStreamPieceBytes = size_t{1} << 20;

// One live punctuation stream on a served model version, as every protocol opens it: the version is held while the
// stream is open (a reload serves new streams, never changes an open one), and its windows go through the
// version's batch scheduler, batched with every other stream's and request's.
class PunctuationStream {
 public:
  // Throws ServingError: FAILED_PRECONDITION for a model without a vocabulary or token head; InvalidArgument for
  // a window or stride the model cannot take.
  PunctuationStream(std::shared_ptr<ServedVersion> served, StreamingOptions options);

  // InvalidArgument for a piece over kMaxStreamPieceBytes, a piece that would leave more than kMaxStreamPieceBytes
  // uncommitted (a word with no end so far: flush to commit it), or invalid UTF-8; the stream stays usable.
  StreamCommit append(std::string_view piece);
  StreamCommit flush();
  // A message of the protocols: a piece (may be empty), then, with `flush`, the end of the utterance.
  StreamCommit take(std::string_view piece, bool flush);
  size_t pending_bytes() const { return punctuator_.buffered_bytes(); }
  const StreamingPunctuator& punctuator() const { return punctuator_; }  // its settings, for replies
  const ServedVersion& served() const { return *served_; }

 private:
  std::shared_ptr<ServedVersion> served_;
  StreamingPunctuator punctuator_;
};

}  // namespace halfserve
