// The WebSocket frames a client sends (the :stream route), fed to the incremental parser in pieces whose sizes the
// input's first byte chooses: masking, fragments, control frames, lengths, the message limit; close frames' payloads
// read as the hub reads them. What the parser holds must stay within its limit whatever arrives.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "serve/websocket.h"

using namespace halfserve::websocket;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  constexpr size_t kLimit = 4096;  // small, so the fuzzer reaches it
  const size_t piece = 1 + data[0] % 64;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  FrameParser parser(kLimit);
  std::vector<Message> messages;
  while (!bytes.empty()) {
    const std::string_view next = bytes.substr(0, piece);
    bytes.remove_prefix(next.size());
    if (!parser.feed(next, messages)) break;
    if (parser.buffered_bytes() > kLimit + kMaxControlPayload) std::abort();  // the limit must hold while reading
  }
  for (const Message& message : messages) {
    if (message.payload.size() > kLimit) std::abort();
    if (message.opcode == Opcode::close) read_close_payload(message.payload);
  }
  return 0;
}
