#include "halfserve/format/vocabulary.h"

#include "halfserve/util/error.h"
#include "halfserve/util/mapped_file.h"
#include "halfserve/util/utf8.h"

namespace halfserve {

std::vector<std::string> read_vocabulary(const std::string& path) {
  const std::string content = read_file_bounded(path, kMaxVocabularyBytes);
  std::vector<std::string> tokens;
  size_t start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    std::string token = content.substr(start, end - start);
    if (!token.empty() && token.back() == '\r') token.pop_back();
    if (!is_valid_utf8(token))
      throw Error(path + ": line " + std::to_string(tokens.size() + 1) + " is not valid UTF-8");
    tokens.push_back(std::move(token));
    start = end + 1;
  }
  if (tokens.empty()) throw Error(path + ": empty vocabulary");
  return tokens;
}

}  // namespace halfserve
