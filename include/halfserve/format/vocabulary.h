#pragma once

#include <string>
#include <vector>

// A WordPiece vocabulary is file data: the importers read it into frozen files, the tokenizer reads it from them.

namespace halfserve {

inline constexpr size_t kMaxVocabularyBytes = 64 << 20;

// Reads a WordPiece vocab.txt: one token per line (id = line number), CRLF tolerated, every line valid UTF-8.
std::vector<std::string> read_vocabulary(const std::string& path);

}  // namespace halfserve
