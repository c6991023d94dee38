#pragma once

#include <string>
#include <vector>

namespace halfserve {

inline constexpr size_t kMaxVocabularyBytes = 64 << 20;

// Reads a WordPiece vocab.txt: one token per line (id = line number), CRLF tolerated, every line valid UTF-8.
std::vector<std::string> read_vocabulary(const std::string& path);

// True when `text` is well-formed UTF-8.
bool is_valid_utf8(std::string_view text);

}  // namespace halfserve
