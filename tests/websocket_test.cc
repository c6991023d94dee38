// The WebSocket wire format (RFC 6455) on bytes: the handshake key, the client-frame parser (masks, fragments,
// control frames, limits, violations) and the server's frames.
#include "serve/websocket.h"

#include <gtest/gtest.h>

#include "halfserve/util/utf8.h"

namespace halfserve::websocket {
namespace {

constexpr std::array<uint8_t, 4> kMask = {0x37, 0xfa, 0x21, 0x3d};  // RFC 6455 §5.7's example mask

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (const int value : values) out.push_back(static_cast<char>(value));
  return out;
}

std::string client_frame(Opcode opcode, std::string_view payload, bool final = true) {
  return frame(opcode, payload, final, kMask);
}

// Feeds `data` in pieces of `step` bytes; returns the messages, or nothing and the failure.
struct Parsed {
  std::vector<Message> messages;
  std::optional<Failure> failure;
};
Parsed parse(std::string_view data, size_t step = SIZE_MAX, size_t limit = 1 << 20) {
  FrameParser parser(limit);
  Parsed parsed;
  for (size_t at = 0; at < data.size(); at += step)
    if (!parser.feed(data.substr(at, std::min(step, data.size() - at)), parsed.messages)) break;
  parsed.failure = parser.failure();
  return parsed;
}

TEST(WebSocketHandshake, AcceptKeyOfTheRfcExample) {
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocketHandshake, ClientKeyMustBeSixteenBytesInBase64) {
  EXPECT_TRUE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_TRUE(valid_client_key("AAAAAAAAAAAAAAAAAAAAAA=="));
  EXPECT_FALSE(valid_client_key(""));
  EXPECT_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ="));    // 23 characters
  EXPECT_FALSE(valid_client_key("AAAAAAAAAAAAAAAAAAAAAAAA"));   // 24 characters, but 18 bytes
  EXPECT_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ!="));   // not base64
  EXPECT_FALSE(valid_client_key("dGhlIHNhbXBs ZSBub25jZQ="));  // a space
}

TEST(WebSocketFrames, MaskedTextFrameOfTheRfcExampleInAnySplit) {
  // RFC 6455 §5.7: a single-frame masked text message "Hello".
  const std::string hello = bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
  EXPECT_EQ(client_frame(Opcode::text, "Hello"), hello);
  for (const size_t step : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, SIZE_MAX}) {
    const Parsed parsed = parse(hello + hello, step);
    ASSERT_FALSE(parsed.failure) << parsed.failure->reason;
    ASSERT_EQ(parsed.messages.size(), 2u) << "step " << step;
    for (const Message& message : parsed.messages) {
      EXPECT_EQ(message.opcode, Opcode::text);
      EXPECT_EQ(message.payload, "Hello");
    }
  }
}

TEST(WebSocketFrames, UnmaskedClientFrameFailsTheConnection) {
  // RFC 6455 §5.7's unmasked "Hello": fine from a server, a protocol error from a client (§5.1).
  const Parsed parsed = parse(bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
  ASSERT_TRUE(parsed.failure);
  EXPECT_EQ(parsed.failure->code, close_code::protocol_error);
  EXPECT_NE(parsed.failure->reason.find("masked"), std::string::npos);
  EXPECT_TRUE(parsed.messages.empty());
}

TEST(WebSocketFrames, FragmentsJoinAndControlFramesMayComeBetween) {
  const std::string data = client_frame(Opcode::text, "今天", false) + client_frame(Opcode::ping, "are you there") +
                           client_frame(Opcode::continuation, "天气", false) +
                           client_frame(Opcode::continuation, "很好", true);
  for (const size_t step : {size_t{1}, size_t{5}, SIZE_MAX}) {
    const Parsed parsed = parse(data, step);
    ASSERT_FALSE(parsed.failure) << parsed.failure->reason;
    ASSERT_EQ(parsed.messages.size(), 2u);
    EXPECT_EQ(parsed.messages[0].opcode, Opcode::ping);
    EXPECT_EQ(parsed.messages[0].payload, "are you there");
    EXPECT_EQ(parsed.messages[1].opcode, Opcode::text);
    EXPECT_EQ(parsed.messages[1].payload, "今天天气很好");
  }
}

TEST(WebSocketFrames, BinaryPingPongCloseAndEmptyFrames) {
  const std::string binary("\x00\x01\xff", 3);
  const std::string data = client_frame(Opcode::binary, binary) + client_frame(Opcode::text, "") +
                           client_frame(Opcode::pong, "p") + client_frame(Opcode::ping, "") +
                           client_frame(Opcode::close, close_payload(close_code::normal, "bye"));
  const Parsed parsed = parse(data, 1);
  ASSERT_FALSE(parsed.failure);
  ASSERT_EQ(parsed.messages.size(), 5u);
  EXPECT_EQ(parsed.messages[0].opcode, Opcode::binary);
  EXPECT_EQ(parsed.messages[0].payload, binary);
  EXPECT_EQ(parsed.messages[1].opcode, Opcode::text);
  EXPECT_EQ(parsed.messages[1].payload, "");
  EXPECT_EQ(parsed.messages[2].opcode, Opcode::pong);
  EXPECT_EQ(parsed.messages[3].opcode, Opcode::ping);
  EXPECT_EQ(parsed.messages[4].opcode, Opcode::close);
  const auto status = read_close_payload(parsed.messages[4].payload);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->code, close_code::normal);
  EXPECT_EQ(status->reason, "bye");
}

TEST(WebSocketFrames, LengthsOfEveryEncodingRoundTrip) {
  for (const size_t length : {size_t{0}, size_t{125}, size_t{126}, size_t{65535}, size_t{65536}, size_t{200000}}) {
    std::string payload(length, '\0');
    for (size_t i = 0; i < length; ++i) payload[i] = static_cast<char>('a' + i % 26);
    const std::string server = frame(Opcode::binary, payload);
    const size_t header = length < 126 ? 2 : length <= 65535 ? 4 : 10;
    EXPECT_EQ(server.size(), header + length) << length;
    EXPECT_EQ(static_cast<uint8_t>(server[1]) & 0x80, 0) << "a server's frames are not masked";
    const Parsed parsed = parse(frame(Opcode::binary, payload, true, kMask), 4096);
    ASSERT_FALSE(parsed.failure) << length;
    ASSERT_EQ(parsed.messages.size(), 1u);
    EXPECT_EQ(parsed.messages[0].payload, payload);
  }
}

TEST(WebSocketFrames, OversizedMessageFailsFromItsHeaderBeforeAnyPayload) {
  FrameParser parser(1 << 20);
  std::vector<Message> messages;
  // Only the header of a 2 MiB frame: refused at once, nothing stored.
  const std::string header = frame(Opcode::text, std::string(2 << 20, 'x'), true, kMask).substr(0, 14);
  EXPECT_FALSE(parser.feed(header, messages));
  ASSERT_TRUE(parser.failure());
  EXPECT_EQ(parser.failure()->code, close_code::message_too_big);
  EXPECT_NE(parser.failure()->reason.find("1048576"), std::string::npos);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
  EXPECT_FALSE(parser.feed("more", messages)) << "a failed parser takes nothing more";

  // Fragments each under the limit, together over it.
  const std::string half(600 << 10, 'y');
  const Parsed parsed = parse(client_frame(Opcode::text, half, false) + client_frame(Opcode::continuation, half));
  ASSERT_TRUE(parsed.failure);
  EXPECT_EQ(parsed.failure->code, close_code::message_too_big);
  EXPECT_TRUE(parsed.messages.empty());

  // Exactly the limit is taken.
  const Parsed at_limit = parse(client_frame(Opcode::text, std::string(1 << 20, 'z')));
  ASSERT_FALSE(at_limit.failure);
  EXPECT_EQ(at_limit.messages.at(0).payload.size(), size_t{1} << 20);
}

TEST(WebSocketFrames, ProtocolViolationsFailWith1002) {
  std::string reserved_opcode = client_frame(Opcode::text, "x");
  reserved_opcode[0] = static_cast<char>(0x83);
  std::string control_opcode = client_frame(Opcode::text, "x");
  control_opcode[0] = static_cast<char>(0x8B);
  std::string reserved_bit = client_frame(Opcode::text, "x");
  reserved_bit[0] = static_cast<char>(0xC1);  // RSV1 without a negotiated extension
  std::string top_bit_length = bytes({0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4});
  const std::pair<std::string, std::string> cases[] = {
      {reserved_opcode, "reserved opcode 3"},
      {control_opcode, "reserved opcode 11"},
      {reserved_bit, "reserved bits"},
      {client_frame(Opcode::ping, "x", false), "fragmented"},
      {client_frame(Opcode::ping, std::string(126, 'x')), "125"},
      {client_frame(Opcode::continuation, "x"), "no fragmented message"},
      {client_frame(Opcode::text, "a", false) + client_frame(Opcode::text, "b"), "before the fragmented one ended"},
      {top_bit_length, "top bit"},
  };
  for (const auto& [data, reason] : cases) {
    const Parsed parsed = parse(data);
    ASSERT_TRUE(parsed.failure) << reason;
    EXPECT_EQ(parsed.failure->code, close_code::protocol_error) << reason;
    EXPECT_NE(parsed.failure->reason.find(reason), std::string::npos) << parsed.failure->reason;
    EXPECT_TRUE(parsed.messages.empty()) << reason;
  }
}

TEST(WebSocketFrames, CloseFramePayloads) {
  EXPECT_EQ(read_close_payload("")->code, 1005) << "no status";
  EXPECT_FALSE(read_close_payload(std::string(1, '\x03')));
  for (const uint16_t bad : {999, 1004, 1005, 1006, 1015, 2999, 5000})
    EXPECT_FALSE(read_close_payload(close_payload(bad, ""))) << bad;
  for (const uint16_t good : {1000, 1001, 1003, 1007, 1011, 3000, 4999})
    EXPECT_EQ(read_close_payload(close_payload(good, "ok"))->code, good);
  EXPECT_FALSE(read_close_payload(close_payload(1000, "") + "\xff")) << "a reason must be UTF-8";

  // A long reason is cut to fit a control frame, at a character boundary.
  std::string long_reason;
  for (int i = 0; i < 100; ++i) long_reason += "长";
  const std::string payload = close_payload(close_code::going_away, long_reason);
  EXPECT_LE(payload.size(), kMaxControlPayload);
  EXPECT_EQ(payload.size(), 2u + 41 * 3);
  const auto status = read_close_payload(payload);
  ASSERT_TRUE(status);
  EXPECT_TRUE(is_valid_utf8(status->reason));
  const Parsed parsed = parse(client_frame(Opcode::close, payload));
  EXPECT_FALSE(parsed.failure);
}

}  // namespace
}  // namespace halfserve::websocket
