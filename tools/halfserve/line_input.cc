#include "line_input.h"

#include <fstream>
#include <iostream>

#include "halfserve/util/error.h"
#include "halfserve/util/utf8.h"

namespace halfserve::cli {

LineInput::LineInput(const std::string& path, size_t max_line_bytes, bool replace_invalid)
    : in_(&std::cin), max_line_bytes_(max_line_bytes), replace_invalid_(replace_invalid), source_(path.empty() ? "stdin" : path) {
  if (!path.empty()) {
    file_ = std::make_unique<std::ifstream>(path, std::ios::binary);
    if (!*file_) throw Error(path + ": cannot open");
    in_ = file_.get();
  }
}

std::optional<std::string> LineInput::next() {
  std::string line;
  char c = 0;
  bool any = false;
  while (in_->get(c)) {
    any = true;
    if (c == '\n') break;
    line.push_back(c);
    if (line.size() > max_line_bytes_)
      throw Error(source_ + ": line " + std::to_string(line_number_ + 1) + " is longer than " +
                  std::to_string(max_line_bytes_) + " bytes (--max-line-bytes)");
  }
  if (!any) return std::nullopt;
  ++line_number_;
  if (!is_valid_utf8(line)) {
    if (!replace_invalid_)
      throw Error(source_ + ": line " + std::to_string(line_number_) +
                  " is not valid UTF-8 (use --replace-invalid to replace bad bytes with U+FFFD)");
    line = replace_invalid_utf8(line);
  }
  return line;
}

}  // namespace halfserve::cli
