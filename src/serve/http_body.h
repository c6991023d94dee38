#pragma once

#include <zlib.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace halfserve {

// A request body as it arrives, decoded (Content-Encoding gzip or deflate) and bounded while it streams: past
// `limit` decoded bytes nothing more is kept or inflated, so a compression bomb costs no more than its compressed
// bytes. The body is kept only when `keep` (a POST's); otherwise it is read and dropped, so a keep-alive connection
// stays in step.
class HttpBody {
 public:
  // Throws nothing: an encoding it cannot decode is reported by problem() once the body is complete.
  HttpBody(std::string_view content_encoding, bool keep, size_t limit);
  ~HttpBody();
  HttpBody(const HttpBody&) = delete;
  HttpBody& operator=(const HttpBody&) = delete;

  void append(const char* data, size_t size);
  // After the last chunk: 0 when the body is fine, else the HTTP status that refuses it (400 corrupt compressed
  // data, 413 over the limit, 415 an unknown encoding), with message() saying why.
  int problem() const;
  std::string message() const;
  std::string& text() { return text_; }
  size_t decoded_bytes() const { return decoded_bytes_; }

 private:
  void keep_decoded(const char* data, size_t size);
  void inflate_chunk(const char* data, size_t size);

  bool keep_;
  size_t limit_;
  std::string text_;
  size_t decoded_bytes_ = 0;
  std::string unknown_encoding_;
  bool compressed_ = false;
  bool corrupt_ = false;
  bool stream_ended_ = false;
  z_stream stream_{};
};

}  // namespace halfserve
