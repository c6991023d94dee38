#include "halfserve/text/vocabulary.h"

#include <utf8proc.h>

#include "halfserve/util/error.h"
#include "halfserve/util/mapped_file.h"

namespace halfserve {

bool is_valid_utf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t offset = 0;
  const auto size = static_cast<utf8proc_ssize_t>(text.size());
  while (offset < size) {
    utf8proc_int32_t codepoint = 0;
    const auto length = utf8proc_iterate(bytes + offset, size - offset, &codepoint);
    if (length <= 0) return false;
    offset += length;
  }
  return true;
}

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
