// The WebSocket hub over socket pairs, without HTTP: one message at a time per connection and in order, while
// connections run side by side; the cap on connections; hang-ups; stop() finishing the message in progress before
// its 1001; a connection adopted after stop().
#include "serve/websocket_hub.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "serve/websocket.h"

namespace halfserve {
namespace {

using websocket::Opcode;
using namespace std::chrono_literals;

// Counts how many of its calls overlap, per session and over all sessions.
struct Overlap {
  std::atomic<int> now{0};
  std::atomic<int> most{0};
  void enter() {
    const int running = ++now;
    int seen = most.load();
    while (running > seen && !most.compare_exchange_weak(seen, running)) {
    }
  }
  void leave() { --now; }
};

class AckSession : public WebSocketSession {
 public:
  AckSession(Overlap& all, std::chrono::milliseconds work) : all_(all), work_(work) {}
  std::vector<std::string> on_message(std::string message, bool text) override {
    mine.enter();
    all_.enter();
    std::this_thread::sleep_for(work_);
    all_.leave();
    mine.leave();
    return {(text ? "ack:" : "binary:") + message};
  }
  Overlap mine;

 private:
  Overlap& all_;
  std::chrono::milliseconds work_;
};

// The client's end of a socket pair whose other end the hub holds.
class Peer {
 public:
  Peer() {
    int ends[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    client_ = ends[0];
    server_ = ends[1];
  }
  ~Peer() {
    if (client_ >= 0) ::close(client_);
    if (!released_) ::close(server_);
  }
  // The server end, to adopt; its release closes it and is recorded.
  UpgradedSocket socket(std::string early_bytes = "") {
    UpgradedSocket socket;
    socket.fd = server_;
    socket.early_bytes = std::move(early_bytes);
    socket.release = [this] {
      ++releases_;
      released_ = true;
      ::close(server_);
    };
    return socket;
  }
  void send(Opcode opcode, std::string_view payload) {
    const std::string frame = websocket::frame(opcode, payload, true, std::array<uint8_t, 4>{1, 2, 3, 4});
    ASSERT_EQ(::send(client_, frame.data(), frame.size(), MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
  }
  void hang_up() {
    ::close(client_);
    client_ = -1;
  }
  // The next server frame (servers send small single frames here), or nullopt after `timeout`.
  std::optional<websocket::Message> read(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (buffer_.size() < 2 || buffer_.size() < 2 + length()) {
      if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
      timeval wait{0, 50000};
      setsockopt(client_, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
      char chunk[4096];
      const ssize_t n = ::recv(client_, chunk, sizeof chunk, 0);
      if (n == 0) return std::nullopt;
      if (n > 0) buffer_.append(chunk, static_cast<size_t>(n));
    }
    websocket::Message message{static_cast<Opcode>(buffer_[0] & 0x0F), buffer_.substr(2, length())};
    buffer_.erase(0, 2 + length());
    return message;
  }
  int releases() const { return releases_; }

 private:
  size_t length() const { return static_cast<uint8_t>(buffer_[1]) & 0x7F; }  // < 126 in these tests
  int client_ = -1, server_ = -1;
  std::atomic<int> releases_{0};
  std::atomic<bool> released_{false};
  std::string buffer_;
};

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

uint16_t close_code(const std::optional<websocket::Message>& message) {
  if (!message || message->opcode != Opcode::close) return 0;
  const auto status = websocket::read_close_payload(message->payload);
  return status ? status->code : 0;
}

TEST(WebSocketHub, OneMessageAtATimePerConnectionInOrderConnectionsSideBySide) {
  // Declared before the hub, so they outlive it (the hub gives their sockets back when it stops).
  Overlap all;
  Peer first, second;
  WebSocketHub hub({});
  auto first_session = std::make_shared<AckSession>(all, 10ms);
  auto second_session = std::make_shared<AckSession>(all, 10ms);
  // The first message arrives with the handshake's bytes, as a client that does not wait for the 101 sends it.
  const std::string early = websocket::frame(Opcode::text, "0", true, std::array<uint8_t, 4>{9, 9, 9, 9});
  hub.adopt(first.socket(early), hub.reserve(), first_session);
  hub.adopt(second.socket(), hub.reserve(), second_session);
  for (int i = 1; i < 20; ++i) first.send(Opcode::text, std::to_string(i));
  for (int i = 0; i < 20; ++i) second.send(i % 2 ? Opcode::binary : Opcode::text, std::to_string(i));
  for (int i = 0; i < 20; ++i) {
    const auto reply = first.read();
    ASSERT_TRUE(reply) << i;
    EXPECT_EQ(reply->payload, "ack:" + std::to_string(i));
  }
  for (int i = 0; i < 20; ++i) {
    const auto reply = second.read();
    ASSERT_TRUE(reply) << i;
    EXPECT_EQ(reply->payload, (i % 2 ? "binary:" : "ack:") + std::to_string(i));
  }
  EXPECT_EQ(first_session->mine.most, 1) << "a connection's messages never overlap";
  EXPECT_EQ(second_session->mine.most, 1);
  EXPECT_EQ(all.most, 2) << "two connections are handled side by side";

  first.send(Opcode::ping, "hi");
  const auto pong = first.read();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, Opcode::pong);
  EXPECT_EQ(pong->payload, "hi");
  first.hang_up();
  second.hang_up();
  EXPECT_TRUE(eventually([&] { return hub.open_connections() == 0; }));
}

TEST(WebSocketHub, ReservationsCapConnectionsAndHangUpsGiveTheirPlaceBack) {
  Overlap all;
  Peer peer;
  WebSocketHubOptions options;
  options.max_connections = 2;
  WebSocketHub hub(options);
  auto one = hub.reserve(), two = hub.reserve();
  ASSERT_TRUE(one && two);
  EXPECT_FALSE(hub.reserve()) << "a third is refused";
  two.reset();  // a handshake whose connection never came
  EXPECT_EQ(hub.open_connections(), 1u);
  hub.adopt(peer.socket(), std::move(one), std::make_shared<AckSession>(all, 0ms));
  auto three = hub.reserve();
  ASSERT_TRUE(three);
  EXPECT_FALSE(hub.reserve());
  peer.hang_up();
  EXPECT_TRUE(eventually([&] { return peer.releases() == 1 && hub.open_connections() == 1; }))
      << "a client that hangs up is given back, its place with it";
  EXPECT_TRUE(hub.reserve());
}

TEST(WebSocketHub, StopFinishesTheMessageInProgressThenCloses1001) {
  Overlap all;
  Peer peer;
  WebSocketHub hub({});
  hub.adopt(peer.socket(), hub.reserve(), std::make_shared<AckSession>(all, 300ms));
  peer.send(Opcode::text, "slow");
  ASSERT_TRUE(eventually([&] { return all.now == 1; }));
  peer.send(Opcode::text, "never handled");
  std::thread stopping([&] { hub.stop(); });
  const auto reply = peer.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->payload, "ack:slow");
  EXPECT_EQ(close_code(peer.read()), websocket::close_code::going_away);
  peer.send(Opcode::close, websocket::close_payload(websocket::close_code::going_away, ""));
  stopping.join();
  EXPECT_EQ(peer.releases(), 1);
  EXPECT_EQ(all.most, 1) << "what waited behind the message in progress was dropped";
}

TEST(WebSocketHub, ConnectionAdoptedAfterStopIsClosedWith1001) {
  Overlap all;
  Peer peer;
  WebSocketHub hub({});
  hub.stop();
  EXPECT_FALSE(hub.reserve());
  hub.adopt(peer.socket(), nullptr, std::make_shared<AckSession>(all, 0ms));
  EXPECT_EQ(close_code(peer.read()), websocket::close_code::going_away);
  EXPECT_EQ(peer.releases(), 1);
}

TEST(WebSocketHub, ClientCloseIsEchoedAndTheSocketGivenBack) {
  Overlap all;
  Peer peer;
  WebSocketHub hub({});
  hub.adopt(peer.socket(), hub.reserve(), std::make_shared<AckSession>(all, 0ms));
  peer.send(Opcode::close, websocket::close_payload(4001, "bye"));
  const auto echoed = peer.read();
  EXPECT_EQ(close_code(echoed), 4001);
  EXPECT_TRUE(eventually([&] { return peer.releases() == 1 && hub.open_connections() == 0; }));
}

}  // namespace
}  // namespace halfserve
