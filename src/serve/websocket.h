#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// The WebSocket protocol's wire format (RFC 6455) as a server speaks it: the handshake's accept key, an incremental
// parser for the frames a client sends, and the frames a server writes. No sockets here (websocket_hub.h owns
// them), so every rule can be tested on bytes.
namespace halfserve::websocket {

enum class Opcode : uint8_t { continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA };

// Status codes of a close frame (RFC 6455 §7.4.1).
namespace close_code {
inline constexpr uint16_t normal = 1000;
inline constexpr uint16_t going_away = 1001;
inline constexpr uint16_t protocol_error = 1002;
inline constexpr uint16_t invalid_payload = 1007;
inline constexpr uint16_t message_too_big = 1009;
inline constexpr uint16_t internal_error = 1011;
}  // namespace close_code

// Control frames carry at most this many payload bytes; a close frame's reason 2 fewer (after its code).
inline constexpr size_t kMaxControlPayload = 125;

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key + the protocol's GUID)).
std::string accept_key(std::string_view client_key);
// A Sec-WebSocket-Key must be the base64 of 16 bytes (24 characters).
bool valid_client_key(std::string_view client_key);

// A whole message (text or binary, its fragments joined) or a control frame.
struct Message {
  Opcode opcode = Opcode::text;
  std::string payload;
};

// Why a connection must be failed: the close code to send and a reason for it.
struct Failure {
  uint16_t code = close_code::protocol_error;
  std::string reason;
};

// Reads the frames a client sends, as bytes arrive in any split: every frame must be masked (§5.1), control frames
// unfragmented and at most 125 bytes, continuations only inside a fragmented message, no reserved bits (no
// extension is negotiated) and no reserved opcodes. A message's size is checked against the limit from the frame
// header, before its payload is stored, so an oversized one costs nothing. Text is passed on as sent: checking
// its UTF-8 is the application's (halfserve answers invalid text with an error message and keeps the stream).
class FrameParser {
 public:
  explicit FrameParser(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Consumes `data`, appending each complete message and control frame to `out`. After a protocol violation it
  // returns false and consumes nothing more; failure() says which close code to send.
  bool feed(std::string_view data, std::vector<Message>& out);
  const std::optional<Failure>& failure() const { return failure_; }
  // Payload bytes held for a message not yet complete (at most the limit).
  size_t buffered_bytes() const { return message_.size() + frame_payload_.size(); }

 private:
  bool parse_header();
  bool fail(uint16_t code, std::string reason);
  void finish_frame(std::vector<Message>& out);

  size_t max_message_bytes_;
  std::optional<Failure> failure_;
  std::string header_;  // bytes of the current frame's header read so far (2 to 14)
  bool have_header_ = false;
  bool fin_ = false;
  Opcode opcode_ = Opcode::text;
  uint64_t payload_length_ = 0;
  uint8_t mask_[4] = {};
  std::string frame_payload_;  // the current frame's payload, unmasked as it arrives
  bool in_message_ = false;    // a fragmented message has begun
  Opcode message_opcode_ = Opcode::text;
  std::string message_;        // the fragments of that message so far
};

// A single (unfragmented) frame as a server sends it: unmasked. With `mask` (a client's 4 bytes), masked as a
// client sends it, and `final` false for a fragment: what the tests need to speak as a client.
std::string frame(Opcode opcode, std::string_view payload, bool final = true,
                  std::optional<std::array<uint8_t, 4>> mask = std::nullopt);

// A close frame's payload: the code and a reason cut (at a character boundary) to fit a control frame.
std::string close_payload(uint16_t code, std::string_view reason);

// A received close frame's payload: nullopt when it is malformed (1 byte, a code no endpoint may send, a reason
// that is not UTF-8), else the code (1005, "no status", for an empty payload) and reason.
struct CloseStatus {
  uint16_t code = 1005;
  std::string reason;
};
std::optional<CloseStatus> read_close_payload(std::string_view payload);

}  // namespace halfserve::websocket
