#pragma once

#include <istream>
#include <memory>
#include <optional>
#include <string>

namespace halfserve::cli {

// Reads text one line at a time from stdin or a file, with a bound on line length and a policy for invalid
// UTF-8: an error naming the line, or each invalid byte replaced by U+FFFD.
class LineInput {
 public:
  LineInput(const std::string& path, size_t max_line_bytes, bool replace_invalid);  // path "" = stdin
  // The next line without its '\n'; nullopt at the end. Throws Error naming the line number.
  std::optional<std::string> next();
  size_t line_number() const { return line_number_; }

 private:
  std::unique_ptr<std::istream> file_;
  std::istream* in_;
  size_t max_line_bytes_;
  bool replace_invalid_;
  size_t line_number_ = 0;
  std::string source_;
};

}  // namespace halfserve::cli
