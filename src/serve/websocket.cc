#include "serve/websocket.h"

#include <nettle/base64.h>
#include <nettle/sha1.h>

#include "halfserve/util/utf8.h"

namespace halfserve::websocket {

namespace {

// RFC 6455 §1.3: the GUID every server appends to the client's key.
constexpr std::string_view kHandshakeGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool is_control(Opcode opcode) { return (static_cast<uint8_t>(opcode) & 0x8) != 0; }

bool known_opcode(uint8_t value) {
  switch (static_cast<Opcode>(value)) {
    case Opcode::continuation:
    case Opcode::text:
    case Opcode::binary:
    case Opcode::close:
    case Opcode::ping:
    case Opcode::pong: return true;
  }
  return false;
}

// Codes an endpoint may put in a close frame (§7.4): the defined ones that are not reserved for reporting
// (1004-1006, 1015), those registered with IANA since (1012-1014), and the ranges for libraries and applications.
bool sendable_close_code(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

bool is_base64_character(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

}  // namespace

std::string accept_key(std::string_view client_key) {
  sha1_ctx sha;
  sha1_init(&sha);
  sha1_update(&sha, client_key.size(), reinterpret_cast<const uint8_t*>(client_key.data()));
  sha1_update(&sha, kHandshakeGuid.size(), reinterpret_cast<const uint8_t*>(kHandshakeGuid.data()));
  uint8_t digest[SHA1_DIGEST_SIZE];
  sha1_digest(&sha, sizeof digest, digest);
  std::string encoded(BASE64_ENCODE_RAW_LENGTH(sizeof digest), '\0');
  base64_encode_raw(encoded.data(), sizeof digest, digest);
  return encoded;
}

bool valid_client_key(std::string_view client_key) {
  if (client_key.size() != 24) return false;
  for (const char c : client_key)
    if (!is_base64_character(c)) return false;
  base64_decode_ctx decoder;
  base64_decode_init(&decoder);
  uint8_t decoded[BASE64_DECODE_LENGTH(24)];
  size_t decoded_length = sizeof decoded;
  return base64_decode_update(&decoder, &decoded_length, decoded, client_key.size(), client_key.data()) == 1 &&
         base64_decode_final(&decoder) == 1 && decoded_length == 16;
}

bool FrameParser::fail(uint16_t code, std::string reason) {
  failure_ = Failure{code, std::move(reason)};
  return false;
}

// The first two bytes say how long the header is: 2, plus 2 or 8 for an extended length, plus 4 for the mask.
static size_t header_length(std::string_view header) {
  const uint8_t length7 = static_cast<uint8_t>(header[1]) & 0x7F;
  const size_t extended = length7 == 126 ? 2 : length7 == 127 ? 8 : 0;
  const bool masked = (static_cast<uint8_t>(header[1]) & 0x80) != 0;
  return 2 + extended + (masked ? 4 : 0);
}

bool FrameParser::parse_header() {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(header_[i]); };
  fin_ = (byte(0) & 0x80) != 0;
  if ((byte(0) & 0x70) != 0) return fail(close_code::protocol_error, "reserved bits set: no extension was negotiated");
  const uint8_t opcode = byte(0) & 0x0F;
  if (!known_opcode(opcode)) return fail(close_code::protocol_error, "reserved opcode " + std::to_string(opcode));
  opcode_ = static_cast<Opcode>(opcode);
  if ((byte(1) & 0x80) == 0) return fail(close_code::protocol_error, "a client's frames must be masked");
  const uint8_t length7 = byte(1) & 0x7F;
  size_t at = 2;
  if (length7 == 126) {
    payload_length_ = (uint64_t{byte(2)} << 8) | byte(3);
    at = 4;
  } else if (length7 == 127) {
    payload_length_ = 0;
    for (size_t i = 2; i < 10; ++i) payload_length_ = (payload_length_ << 8) | byte(i);
    if (payload_length_ >> 63)
      return fail(close_code::protocol_error, "a 64-bit payload length must have its top bit clear");
    at = 10;
  } else {
    payload_length_ = length7;
  }
  for (size_t i = 0; i < 4; ++i) mask_[i] = byte(at + i);

  if (is_control(opcode_)) {
    if (!fin_) return fail(close_code::protocol_error, "a control frame must not be fragmented");
    if (payload_length_ > kMaxControlPayload)
      return fail(close_code::protocol_error, "a control frame carries at most 125 bytes");
    return true;
  }
  if (opcode_ == Opcode::continuation && !in_message_)
    return fail(close_code::protocol_error, "a continuation frame with no fragmented message to continue");
  if (opcode_ != Opcode::continuation && in_message_)
    return fail(close_code::protocol_error, "a new message began before the fragmented one ended");
  const uint64_t so_far = opcode_ == Opcode::continuation ? message_.size() : 0;
  if (payload_length_ > max_message_bytes_ - so_far)
    return fail(close_code::message_too_big, "a message over the limit of " + std::to_string(max_message_bytes_) + " bytes");
  return true;
}

void FrameParser::finish_frame(std::vector<Message>& out) {
  have_header_ = false;
  header_.clear();
  std::string payload = std::move(frame_payload_);
  frame_payload_.clear();
  if (is_control(opcode_)) {
    out.push_back({opcode_, std::move(payload)});
    return;
  }
  if (opcode_ != Opcode::continuation) {
    if (fin_) {
      out.push_back({opcode_, std::move(payload)});
      return;
    }
    in_message_ = true;
    message_opcode_ = opcode_;
    message_ = std::move(payload);
    return;
  }
  message_ += payload;
  if (!fin_) return;
  in_message_ = false;
  out.push_back({message_opcode_, std::move(message_)});
  message_.clear();
}

bool FrameParser::feed(std::string_view data, std::vector<Message>& out) {
  if (failure_) return false;
  for (;;) {
    if (!have_header_) {
      const size_t wanted = header_.size() < 2 ? 2 : header_length(header_);
      const size_t take = std::min(wanted - header_.size(), data.size());
      header_.append(data.substr(0, take));
      data.remove_prefix(take);
      if (header_.size() < wanted) return true;  // more bytes to come
      if (wanted == 2 && header_length(header_) > 2) continue;
      if (!parse_header()) return false;
      have_header_ = true;
      frame_payload_.reserve(static_cast<size_t>(payload_length_));
    }
    const size_t take = static_cast<size_t>(std::min<uint64_t>(payload_length_ - frame_payload_.size(), data.size()));
    const size_t offset = frame_payload_.size();
    for (size_t i = 0; i < take; ++i)
      frame_payload_.push_back(static_cast<char>(static_cast<uint8_t>(data[i]) ^ mask_[(offset + i) % 4]));
    data.remove_prefix(take);
    if (frame_payload_.size() < payload_length_) return true;
    finish_frame(out);
    if (data.empty()) return true;
  }
}

std::string frame(Opcode opcode, std::string_view payload, bool final, std::optional<std::array<uint8_t, 4>> mask) {
  std::string out;
  out.reserve(payload.size() + 14);
  out.push_back(static_cast<char>((final ? 0x80 : 0x00) | static_cast<uint8_t>(opcode)));
  const uint8_t mask_bit = mask ? 0x80 : 0x00;
  const uint64_t length = payload.size();
  if (length < 126) {
    out.push_back(static_cast<char>(mask_bit | length));
  } else if (length <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(length >> 8));
    out.push_back(static_cast<char>(length & 0xFF));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((length >> shift) & 0xFF));
  }
  if (!mask) return out.append(payload);
  for (const uint8_t m : *mask) out.push_back(static_cast<char>(m));
  for (size_t i = 0; i < payload.size(); ++i)
    out.push_back(static_cast<char>(static_cast<uint8_t>(payload[i]) ^ (*mask)[i % 4]));
  return out;
}

std::string close_payload(uint16_t code, std::string_view reason) {
  std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  // Whole characters only, up to the control frame's 125 bytes.
  size_t kept = 0;
  while (kept < reason.size()) {
    char32_t codepoint = 0;
    const size_t length = std::max<size_t>(1, decode_utf8(reason, kept, codepoint));
    if (payload.size() + kept + length > kMaxControlPayload) break;
    kept += length;
  }
  return payload.append(reason.substr(0, kept));
}

std::optional<CloseStatus> read_close_payload(std::string_view payload) {
  if (payload.empty()) return CloseStatus{};
  if (payload.size() < 2) return std::nullopt;
  const auto code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) | static_cast<uint8_t>(payload[1]));
  const std::string_view reason = payload.substr(2);
  if (!sendable_close_code(code) || !is_valid_utf8(reason)) return std::nullopt;
  return CloseStatus{code, std::string(reason)};
}

}  // namespace halfserve::websocket
