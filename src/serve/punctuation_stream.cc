#include "serve/punctuation_stream.h"

#include "halfserve/serve/serving_error.h"

namespace halfserve {

namespace {

// The served version's tokenizer, after checking it can punctuate at all.
std::shared_ptr<const BertTokenizer> punctuating_tokenizer(const ServedVersion& served) {
  if (served.tokenizer() == nullptr)
    throw ServingError(ServingCode::failed_precondition, "this model has no vocabulary: it cannot tokenize text to punctuate");
  if (!served.metadata().has_head())
    throw ServingError(ServingCode::failed_precondition, "this model has no token classification head: it cannot punctuate");
  return served.tokenizer();
}

ModelRunner scheduled_runner(const std::shared_ptr<ServedVersion>& served) {
  return [served](const InputBatch& inputs, const OutputSelection& outputs) { return served->run(inputs, outputs); };
}

}  // namespace

PunctuationStream::PunctuationStream(std::shared_ptr<ServedVersion> served, StreamingOptions options)
    : served_(std::move(served)),
      punctuator_(served_->metadata(), punctuating_tokenizer(*served_), scheduled_runner(served_), options) {}

StreamCommit PunctuationStream::append(std::string_view piece) {
  if (piece.size() > kMaxStreamPieceBytes)
    throw InvalidArgument("a piece of " + std::to_string(piece.size()) + " bytes is over the limit of " +
                          std::to_string(kMaxStreamPieceBytes) + " (send text as it is recognized, in pieces)");
  // Normally a window's worth waits; a word that never ends (letters with no break, piece after piece) would grow
  // without bound.
  const size_t pending = punctuator_.buffered_bytes();
  if (pending > 0 && pending + piece.size() > kMaxStreamPieceBytes)
    throw InvalidArgument("the stream holds " + std::to_string(pending) +
                          " bytes not yet committed (a word with no end so far); with this piece it would hold more "
                          "than " + std::to_string(kMaxStreamPieceBytes) + ": flush to commit them");
  return punctuator_.append(piece);
}

StreamCommit PunctuationStream::flush() { return punctuator_.flush(); }

StreamCommit PunctuationStream::take(std::string_view piece, bool flush) {
  StreamCommit commit = piece.empty() ? StreamCommit{} : append(piece);
  if (!flush) return commit;
  StreamCommit rest = punctuator_.flush();
  commit.text += rest.text;
  for (CommittedWord& word : rest.words) commit.words.push_back(std::move(word));
  return commit;
}

}  // namespace halfserve
