#include "serve/http_body.h"

#include <strings.h>

#include <algorithm>

namespace halfserve {

namespace {
constexpr size_t kInflateChunk = 64 << 10;
}  // namespace

HttpBody::HttpBody(std::string_view content_encoding, bool keep, size_t limit) : keep_(keep), limit_(limit) {
  const std::string encoding(content_encoding);
  if (encoding.empty() || strcasecmp(encoding.c_str(), "identity") == 0) return;
  const bool gzip = strcasecmp(encoding.c_str(), "gzip") == 0 || strcasecmp(encoding.c_str(), "x-gzip") == 0;
  if (!gzip && strcasecmp(encoding.c_str(), "deflate") != 0) {
    unknown_encoding_ = encoding;
    return;
  }
  // 16 + MAX_WBITS reads the gzip wrapper; MAX_WBITS the zlib one that HTTP's "deflate" names.
  compressed_ = inflateInit2(&stream_, gzip ? 16 + MAX_WBITS : MAX_WBITS) == Z_OK;
  corrupt_ = !compressed_;
}

HttpBody::~HttpBody() {
  if (compressed_) inflateEnd(&stream_);
}

void HttpBody::append(const char* data, size_t size) {
  if (!unknown_encoding_.empty()) return;  // refused once complete; nothing is kept meanwhile
  if (!compressed_) {
    keep_decoded(data, size);
    return;
  }
  inflate_chunk(data, size);
}

void HttpBody::keep_decoded(const char* data, size_t size) {
  decoded_bytes_ += size;
  if (keep_ && decoded_bytes_ <= limit_) text_.append(data, size);
}

void HttpBody::inflate_chunk(const char* data, size_t size) {
  if (corrupt_ || stream_ended_ || decoded_bytes_ > limit_) return;  // past the limit: the rest is only read
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
  stream_.avail_in = static_cast<uInt>(size);
  char out[kInflateChunk];
  while (stream_.avail_in > 0 && decoded_bytes_ <= limit_) {
    stream_.next_out = reinterpret_cast<Bytef*>(out);
    stream_.avail_out = sizeof out;
    const int result = inflate(&stream_, Z_NO_FLUSH);
    if (result != Z_OK && result != Z_STREAM_END && result != Z_BUF_ERROR) {
      corrupt_ = true;
      return;
    }
    keep_decoded(out, sizeof out - stream_.avail_out);
    if (result == Z_STREAM_END) {
      stream_ended_ = true;
      return;
    }
    if (result == Z_BUF_ERROR) return;  // needs more input
  }
}

int HttpBody::problem() const {
  if (!unknown_encoding_.empty()) return 415;
  if (decoded_bytes_ > limit_) return 413;
  if (corrupt_ || (compressed_ && !stream_ended_)) return 400;
  return 0;
}

std::string HttpBody::message() const {
  switch (problem()) {
    case 415: return "unsupported Content-Encoding '" + unknown_encoding_ + "' (gzip, deflate or identity)";
    case 413: return "request body is larger than the limit of " + std::to_string(limit_) + " bytes" +
                     (compressed_ ? " once decompressed" : "");
    case 400: return "the compressed request body is corrupt or truncated";
    default: return "";
  }
}

}  // namespace halfserve
