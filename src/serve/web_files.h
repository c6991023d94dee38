#pragma once

#include <cstddef>
#include <string_view>

// The web page's files (web/), embedded at build time by web/embed.cmake into web_files.cc in the build tree.
namespace halfserve::rest {

struct EmbeddedFile {
  std::string_view name;  // "index.html"
  std::string_view text;
};

extern const EmbeddedFile kWebFiles[];
extern const size_t kWebFileCount;

}  // namespace halfserve::rest
