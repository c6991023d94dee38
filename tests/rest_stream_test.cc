// Streaming punctuation over a WebSocket on the REST port, spoken as a client over a raw socket: the handshake
// and its refusals, a stream whose committed text equals offline punctuation, errors that keep the stream, the
// limits (open streams, idle time, message size), pings, closes, shutdown; and the web page's routes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <thread>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "halfserve/serve/rest_server.h"
#include "halfserve/text/punctuator.h"
#include "halfserve/util/utf8.h"
#include "serve/websocket.h"
#include "test_support.h"

namespace halfserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::Contains;
using websocket::Opcode;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kSeed = 41;
constexpr const char* kKey = "dGhlIHNhbXBsZSBub25jZQ==";

// The tiny model over the generated 21128-token vocabulary (CJK ideographs included), so Chinese text tokenizes.
FrozenModel cjk_model() { return testing::tiny_model(kSeed, 21128, 1); }

size_t thread_count() {
  size_t threads = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/task")) ++threads;
  return threads;
}

// A WebSocket client on a raw socket: the handshake, masked frames out, the server's (unmasked) frames in.
class Client {
 public:
  Client(int port, const std::string& path, const std::string& extra_headers = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return;
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: " + std::string(kKey) +
                                "\r\nSec-WebSocket-Version: 13\r\n" + extra_headers + "\r\n";
    send_raw(request);
    while (buffer_.find("\r\n\r\n") == std::string::npos)
      if (!receive(std::chrono::seconds(10))) return;
    const size_t end = buffer_.find("\r\n\r\n") + 4;
    head_ = buffer_.substr(0, end);
    buffer_.erase(0, end);
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& head() const { return head_; }
  bool upgraded() const { return head_.rfind("HTTP/1.1 101", 0) == 0; }
  // A reply that was not an upgrade: its body, once the server has sent it all.
  std::string rest_of_reply() {
    while (receive(std::chrono::milliseconds(300))) {
    }
    return buffer_;
  }

  void send_raw(const std::string& bytes) { ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  void send(Opcode opcode, std::string_view payload) {
    send_raw(websocket::frame(opcode, payload, true, std::array<uint8_t, 4>{0x12, 0x34, 0x56, 0x78}));
  }
  void send_json(const json& message) { send(Opcode::text, message.dump()); }

  // The next frame from the server; nullopt when none comes in time or the connection ends.
  std::optional<websocket::Message> read(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (buffer_.size() >= 2) {
        const auto byte = [&](size_t i) { return static_cast<uint8_t>(buffer_[i]); };
        EXPECT_EQ(byte(1) & 0x80, 0) << "server frames are not masked";
        size_t header = 2;
        uint64_t length = byte(1) & 0x7F;
        if (length == 126) header = 4;
        if (length == 127) header = 10;
        if (buffer_.size() >= header) {
          if (header == 4) length = (uint64_t{byte(2)} << 8) | byte(3);
          if (header == 10) {
            length = 0;
            for (size_t i = 2; i < 10; ++i) length = (length << 8) | byte(i);
          }
          if (buffer_.size() >= header + length) {
            EXPECT_NE(byte(0) & 0x80, 0) << "server messages are single frames";
            websocket::Message message{static_cast<Opcode>(byte(0) & 0x0F), buffer_.substr(header, length)};
            buffer_.erase(0, header + length);
            return message;
          }
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || !receive(left)) return std::nullopt;
    }
  }
  // The next text message as JSON (null when something else came).
  json read_json() {
    const auto message = read();
    if (!message || message->opcode != Opcode::text) return nullptr;
    return json::parse(message->payload, nullptr, false);
  }
  // True once the server has closed the TCP connection (within the timeout).
  bool closed_by_server(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      char byte;
      timeval wait{0, 100000};
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
      const ssize_t n = ::recv(fd_, &byte, 1, 0);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return true;
    }
    return false;
  }

 private:
  bool receive(std::chrono::milliseconds timeout) {
    timeval wait{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
  std::string head_;
};

websocket::CloseStatus close_status(const std::optional<websocket::Message>& message) {
  EXPECT_TRUE(message) << "no close frame came";
  if (!message) return {};
  EXPECT_EQ(message->opcode, Opcode::close);
  const auto status = websocket::read_close_payload(message->payload);
  EXPECT_TRUE(status) << "malformed close payload";
  return status.value_or(websocket::CloseStatus{});
}

// `text` cut into pieces of 1 to 9 characters (a piece never splits a character: JSON carries whole ones).
std::vector<std::string> pieces_of(const std::string& text, uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<std::string> pieces;
  size_t at = 0;
  while (at < text.size()) {
    const size_t characters = 1 + random() % 9;
    size_t end = at;
    for (size_t c = 0; c < characters && end < text.size(); ++c) {
      char32_t codepoint = 0;
      end += std::max<size_t>(1, decode_utf8(text, end, codepoint));
    }
    pieces.push_back(text.substr(at, end - at));
    at = end;
  }
  return pieces;
}

class RestStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "tiny" / "1");
    save_frozen_model(cjk_model(), (dir_ / "tiny" / "1" / "model.safetensors").string());
    FrozenModel bare = testing::tiny_model(21, 300, 1);
    bare.metadata.tokenizer.vocab.clear();
    fs::create_directories(dir_ / "bare" / "1");
    save_frozen_model(bare, (dir_ / "bare" / "1" / "model.safetensors").string());
    ModelManagerOptions options;
    options.poll_seconds = 0;
    options.metrics = &metrics_;
    options.batching_enabled = true;  // streams' windows go through the batcher, as in `serve --enable_batching`
    models_ = std::make_unique<ModelManager>(
        std::vector<ServedModelConfig>{{"tiny", (dir_ / "tiny").string(), {}, {}},
                                       {"bare", (dir_ / "bare").string(), {}, {}}},
        options);
    models_->start();
    ASSERT_TRUE(models_->ready());
  }

  void TearDown() override {
    if (server_) server_->stop();
    if (models_) models_->stop();
  }

  void start(size_t max_streams = 1000, std::chrono::milliseconds idle = std::chrono::seconds(120)) {
    RestOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.max_streams = max_streams;
    options.stream_idle_timeout = idle;
    server_ = std::make_unique<RestServer>(*models_, metrics_, options);
    server_->start();
  }

  httplib::Result get(const std::string& path, const httplib::Headers& headers = {}) {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_read_timeout(10, 0);
    return client.Get(path, headers);
  }

  testing::TempDir dir_;
  ServingMetrics metrics_;
  std::unique_ptr<ModelManager> models_;
  std::unique_ptr<RestServer> server_;
};

TEST_F(RestStreamTest, CommittedTextEqualsOfflinePunctuationWithTheSameWindowAndStride) {
  start();
  const std::string text =
      "今天天气很好我们去公园玩吧公园里有很多人在散步还有小朋友在放风筝我们走了一会儿就坐在湖边的长椅上休息"
      "湖面上有几只鸭子游来游去远处的山在阳光下显得特别清楚到了中午我们在附近的小饭馆吃了面条下午三点才回家";
  for (const auto& [window, stride] : {std::pair<int, int>{16, 8}, {24, 22}, {12, 3}}) {
    Client client(server_->port(), "/v1/models/tiny:stream");
    ASSERT_TRUE(client.upgraded()) << client.head();
    EXPECT_TRUE(Contains(client.head(), "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) << client.head();

    client.send_json({{"window", window}, {"stride", stride}});
    const json settings = client.read_json();
    EXPECT_EQ(settings["window"], window) << settings.dump();
    EXPECT_EQ(settings["stride"], stride);
    EXPECT_EQ(settings["model"], "tiny");
    EXPECT_EQ(settings["version"], 1);
    EXPECT_GT(settings["lookahead_tokens"].get<int>(), 0);

    std::string committed, committed_before_flush, words;
    for (const std::string& piece : pieces_of(text, static_cast<uint32_t>(window))) {
      client.send_json({{"text", piece}});
      const json reply = client.read_json();
      ASSERT_TRUE(reply.contains("committed")) << reply.dump();
      EXPECT_FALSE(reply.contains("final"));
      EXPECT_LE(reply["pending_bytes"].get<size_t>(), text.size());
      committed += reply["committed"].get<std::string>();
      for (const json& word : reply["words"]) {
        words += word["text"].get<std::string>();
        EXPECT_GE(word["probability"].get<double>(), 0.0);
        EXPECT_LE(word["probability"].get<double>(), 1.0);
      }
    }
    committed_before_flush = committed;
    client.send_json({{"flush", true}});
    const json last = client.read_json();
    EXPECT_EQ(last["final"], true) << last.dump();
    EXPECT_EQ(last["pending_bytes"], 0);
    committed += last["committed"].get<std::string>();
    for (const json& word : last["words"]) words += word["text"].get<std::string>();

    Punctuator offline(BertModel::from_model(cjk_model(), {}), {window, stride});
    EXPECT_EQ(committed, offline.punctuate({text})[0]) << "window " << window << ", stride " << stride;
    EXPECT_EQ(words, text) << "the words are the text, marks aside";
    EXPECT_GT(committed_before_flush.size(), text.size() / 2) << "most of the text commits before the flush";
  }
  const std::string metrics = metrics_.prometheus_text();
  const std::regex count(R"(request_latency_count\{model_name="tiny",API="stream",entrypoint="REST"\} (\d+))");
  std::smatch match;
  ASSERT_TRUE(std::regex_search(metrics, match, count)) << metrics;
  EXPECT_GT(std::stoi(match[1]), 30) << "each message is counted";
}

TEST_F(RestStreamTest, BadMessagesGetAnErrorAndTheStreamGoesOn) {
  start();
  Client client(server_->port(), "/v1/models/tiny/versions/1:stream");
  ASSERT_TRUE(client.upgraded()) << client.head();
  client.send(Opcode::text, "{\"text\": \"\xff\xfe\"}");
  EXPECT_TRUE(Contains(client.read_json().value("error", ""), "not valid UTF-8"));
  client.send(Opcode::text, "not json");
  EXPECT_TRUE(Contains(client.read_json().value("error", ""), "not JSON"));
  client.send_json({{"txt", "x"}});
  EXPECT_TRUE(Contains(client.read_json().value("error", ""), "unknown field \"txt\""));
  client.send(Opcode::binary, "abc");
  EXPECT_TRUE(Contains(client.read_json().value("error", ""), "binary"));
  client.send_json({{"window", 100000}});
  EXPECT_TRUE(client.read_json().contains("error")) << "a window beyond the model's positions";
  // None of that opened the stream: settings may still come first.
  client.send_json({{"window", 16}, {"stride", 8}});
  EXPECT_EQ(client.read_json()["window"], 16);
  client.send_json({{"text", "今天天气很好"}});
  const json first = client.read_json();
  ASSERT_TRUE(first.contains("committed")) << first.dump();
  client.send_json({{"window", 20}});
  EXPECT_TRUE(Contains(client.read_json().value("error", ""), "first message"));
  client.send(Opcode::text, "{\"text\": \"我们\xe5\"}");  // a character cut short
  EXPECT_TRUE(Contains(client.read_json().value("error", ""), "not valid UTF-8"));
  client.send_json({{"text", "我们去公园玩吧"}, {"flush", true}});
  const json last = client.read_json();
  EXPECT_EQ(last["final"], true) << last.dump();
  // The stream took exactly the valid pieces, in order: the refused ones left no trace.
  Punctuator offline(BertModel::from_model(cjk_model(), {}), {16, 8});
  EXPECT_EQ(first["committed"].get<std::string>() + last["committed"].get<std::string>(),
            offline.punctuate({"今天天气很好我们去公园玩吧"})[0]);
}

TEST_F(RestStreamTest, AWordThatNeverEndsIsHeldUpToALimitThenFlushed) {
  start();
  Client client(server_->port(), "/v1/models/tiny:stream");
  ASSERT_TRUE(client.upgraded());
  const std::string letters(600 << 10, 'a');  // one word: nothing can commit until it ends
  client.send_json({{"text", letters}});
  EXPECT_EQ(client.read_json()["pending_bytes"], letters.size());
  client.send_json({{"text", letters}});
  const json refused = client.read_json();
  EXPECT_TRUE(Contains(refused.value("error", ""), "holds 614400 bytes not yet committed")) << refused.dump();
  client.send_json({{"text", "aaa"}});
  EXPECT_EQ(client.read_json()["pending_bytes"], letters.size() + 3) << "smaller pieces still fit";
  client.send_json({{"flush", true}});
  const json flushed = client.read_json();
  EXPECT_EQ(flushed["pending_bytes"], 0);
  EXPECT_EQ(flushed["words"].size(), 1u);
  EXPECT_EQ(flushed["words"][0]["text"].get<std::string>().size(), letters.size() + 3);
}

TEST_F(RestStreamTest, HandshakesThatAreNotWebSocketsAreRefusedNamingWhatIsMissing) {
  start();
  auto result = get("/v1/models/tiny:stream");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 400);
  for (const char* missing : {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version"})
    EXPECT_TRUE(Contains(result->body, missing)) << result->body;

  result = get("/v1/models/tiny:stream", {{"Upgrade", "websocket"}, {"Connection", "Upgrade"},
                                          {"Sec-WebSocket-Key", "short"}, {"Sec-WebSocket-Version", "13"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 400);
  EXPECT_TRUE(Contains(result->body, "16 bytes in base64")) << result->body;
  EXPECT_FALSE(Contains(result->body, "Upgrade: websocket")) << result->body;

  result = get("/v1/models/tiny:stream", {{"Upgrade", "websocket"}, {"Connection", "keep-alive, Upgrade"},
                                          {"Sec-WebSocket-Key", kKey}, {"Sec-WebSocket-Version", "8"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 426);
  EXPECT_EQ(result->get_header_value("Sec-WebSocket-Version"), "13");

  Client unknown(server_->port(), "/v1/models/nope:stream");
  EXPECT_TRUE(Contains(unknown.head(), "HTTP/1.1 404")) << unknown.head();
  Client no_vocabulary(server_->port(), "/v1/models/bare:stream");
  EXPECT_TRUE(Contains(no_vocabulary.head(), "HTTP/1.1 400")) << no_vocabulary.head();
  EXPECT_TRUE(Contains(no_vocabulary.rest_of_reply(), "no vocabulary"));
  Client missing_version(server_->port(), "/v1/models/tiny/versions/7:stream");
  EXPECT_TRUE(Contains(missing_version.head(), "HTTP/1.1 404")) << missing_version.head();

  // libmicrohttpd upgrades HTTP/1.1 only: an HTTP/1.0 handshake gets a 400 that says so.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(server_->port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  const std::string request = "GET /v1/models/tiny:stream HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: " + std::string(kKey) + "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  timeval wait{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  std::string reply;
  char chunk[4096];
  for (ssize_t n; (n = ::recv(fd, chunk, sizeof chunk, 0)) > 0;) reply.append(chunk, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_TRUE(Contains(reply, " 400 ")) << reply;
  EXPECT_TRUE(Contains(reply, "needs HTTP/1.1")) << reply;
}

TEST_F(RestStreamTest, ConcurrentStreamsEachCommitTheirOwnText) {
  start();
  const std::string base = "今天天气很好我们去公园玩吧公园里有很多人在散步还有小朋友在放风筝我们走了一会儿就坐下休息";
  const std::vector<std::string> characters = [&] {
    std::vector<std::string> list;
    for (const std::string& piece : pieces_of(base, 0)) list.push_back(piece);
    return list;
  }();
  constexpr int kStreams = 24;
  std::vector<std::string> texts(kStreams), committed(kStreams);
  for (int s = 0; s < kStreams; ++s)  // each stream its own text: the base text's pieces rotated
    for (size_t i = 0; i < characters.size(); ++i) texts[s] += characters[(i + s) % characters.size()];
  std::vector<std::thread> clients;
  for (int s = 0; s < kStreams; ++s)
    clients.emplace_back([&, s] {
      Client client(server_->port(), "/v1/models/tiny:stream");
      if (!client.upgraded()) return;
      client.send_json({{"window", 16}, {"stride", 8}});
      client.read_json();
      for (const std::string& piece : pieces_of(texts[s], static_cast<uint32_t>(s))) {
        client.send_json({{"text", piece}});
        committed[s] += client.read_json().value("committed", "?");
      }
      client.send_json({{"flush", true}});
      committed[s] += client.read_json().value("committed", "?");
    });
  for (std::thread& client : clients) client.join();
  Punctuator offline(BertModel::from_model(cjk_model(), {}), {16, 8});
  const std::vector<std::string> expected = offline.punctuate(texts);
  for (int s = 0; s < kStreams; ++s) EXPECT_EQ(committed[s], expected[s]) << "stream " << s;
}

TEST_F(RestStreamTest, StreamsPastTheCapAreRefusedWith503AndTakeNoThreads) {
  start(/*max_streams=*/40);
  const size_t threads_before = thread_count();
  std::vector<std::unique_ptr<Client>> open;
  for (int i = 0; i < 40; ++i) {
    open.push_back(std::make_unique<Client>(server_->port(), "/v1/models/tiny:stream"));
    ASSERT_TRUE(open.back()->upgraded()) << i << ": " << open.back()->head();
  }
  // Forty open streams, no message yet: no thread each (the handshakes took request threads, started on demand).
  EXPECT_LE(thread_count(), threads_before + 40 / 2) << "upgraded connections must not hold a thread each";

  Client refused(server_->port(), "/v1/models/tiny:stream");
  EXPECT_TRUE(Contains(refused.head(), "HTTP/1.1 503")) << refused.head();
  EXPECT_TRUE(Contains(refused.head(), "Retry-After: 1")) << refused.head();
  const json body = json::parse(refused.rest_of_reply(), nullptr, false);
  EXPECT_TRUE(Contains(body.value("error", ""), "limit of 40 open streams")) << body.dump();

  // Closing one makes room for one.
  open.front()->send(Opcode::close, websocket::close_payload(websocket::close_code::normal, "done"));
  EXPECT_EQ(close_status(open.front()->read()).code, websocket::close_code::normal);
  EXPECT_TRUE(open.front()->closed_by_server(std::chrono::seconds(5)));
  bool reopened = false;
  for (int attempt = 0; attempt < 50 && !reopened; ++attempt) {
    Client again(server_->port(), "/v1/models/tiny:stream");
    reopened = again.upgraded();
    if (!reopened) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(reopened);
}

TEST_F(RestStreamTest, IdleStreamsAreClosedWithAReason) {
  start(1000, std::chrono::milliseconds(400));
  Client busy(server_->port(), "/v1/models/tiny:stream");
  Client idle(server_->port(), "/v1/models/tiny:stream");
  ASSERT_TRUE(busy.upgraded() && idle.upgraded());
  const auto start_time = Clock::now();
  // Messages keep a stream open past the idle time; a ping is no message.
  for (int i = 0; i < 4; ++i) {
    busy.send_json({{"text", "天"}});
    EXPECT_TRUE(busy.read_json().contains("committed"));
    busy.send(Opcode::ping, "still here");
    const auto pong = busy.read();
    ASSERT_TRUE(pong);
    EXPECT_EQ(pong->opcode, Opcode::pong);
    EXPECT_EQ(pong->payload, "still here");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const websocket::CloseStatus status = close_status(idle.read(std::chrono::seconds(5)));
  EXPECT_GE(Clock::now() - start_time, std::chrono::milliseconds(400));
  EXPECT_EQ(status.code, websocket::close_code::normal);
  EXPECT_TRUE(Contains(status.reason, "no message for 400 ms")) << status.reason;
  idle.send(Opcode::close, websocket::close_payload(websocket::close_code::normal, ""));
  EXPECT_TRUE(idle.closed_by_server(std::chrono::seconds(5)));
  EXPECT_EQ(close_status(busy.read(std::chrono::seconds(5))).code, websocket::close_code::normal);
}

TEST_F(RestStreamTest, OversizedAndMalformedFramesCloseTheStream) {
  start();
  Client big(server_->port(), "/v1/models/tiny:stream");
  ASSERT_TRUE(big.upgraded());
  big.send(Opcode::text, std::string((1 << 20) + 1, 'x'));
  const websocket::CloseStatus too_big = close_status(big.read());
  EXPECT_EQ(too_big.code, websocket::close_code::message_too_big);
  EXPECT_TRUE(Contains(too_big.reason, "limit of 1048576 bytes")) << too_big.reason;

  Client unmasked(server_->port(), "/v1/models/tiny:stream");
  ASSERT_TRUE(unmasked.upgraded());
  unmasked.send_raw(websocket::frame(Opcode::text, "{}"));
  EXPECT_EQ(close_status(unmasked.read()).code, websocket::close_code::protocol_error);
  EXPECT_TRUE(unmasked.closed_by_server(std::chrono::seconds(5))) << "closed after the close handshake's wait";

  // Other streams are unaffected.
  Client fine(server_->port(), "/v1/models/tiny:stream");
  fine.send_json({{"text", "你好"}, {"flush", true}});
  EXPECT_EQ(fine.read_json()["final"], true);
}

TEST_F(RestStreamTest, ShutdownClosesOpenStreamsWith1001) {
  start();
  Client client(server_->port(), "/v1/models/tiny:stream");
  Client silent(server_->port(), "/v1/models/tiny:stream");  // never answers the server's close
  ASSERT_TRUE(client.upgraded() && silent.upgraded());
  client.send_json({{"text", "今天天气很好"}});
  EXPECT_TRUE(client.read_json().contains("committed"));
  const auto start_time = Clock::now();
  std::thread stopping([&] { server_->stop(); });
  const websocket::CloseStatus status = close_status(client.read(std::chrono::seconds(10)));
  EXPECT_EQ(status.code, websocket::close_code::going_away);
  EXPECT_TRUE(Contains(status.reason, "shutting down"));
  client.send(Opcode::close, websocket::close_payload(websocket::close_code::going_away, ""));
  EXPECT_TRUE(client.closed_by_server(std::chrono::seconds(2))) << "an answered close ends the connection at once";
  EXPECT_EQ(close_status(silent.read(std::chrono::seconds(10))).code, websocket::close_code::going_away);
  stopping.join();
  // The silent one is waited for 2 s (the closing handshake's wait), no longer.
  EXPECT_LT(Clock::now() - start_time, std::chrono::seconds(5));
  EXPECT_TRUE(silent.closed_by_server(std::chrono::seconds(1)));
}

TEST_F(RestStreamTest, WebPageAndTheServedModelList) {
  start();
  auto page = get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_TRUE(Contains(page->body, "<script src=\"/app.js\""));
  EXPECT_TRUE(Contains(page->get_header_value("Content-Security-Policy"), "default-src 'self'"));
  EXPECT_EQ(get("/index.html")->body, page->body);
  auto script = get("/app.js");
  EXPECT_EQ(script->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_TRUE(Contains(script->body, ":stream"));
  EXPECT_EQ(get("/style.css")->get_header_value("Content-Type"), "text/css; charset=utf-8");
  EXPECT_EQ(get("/missing.js")->status, 404);

  auto listed = get("/v1/models");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->status, 200);
  const json models = json::parse(listed->body)["models"];
  ASSERT_EQ(models.size(), 2u) << listed->body;
  EXPECT_EQ(models[0]["name"], "tiny");
  const json version = models[0]["versions"][0];
  EXPECT_EQ(version["version"], 1);
  EXPECT_EQ(version["state"], "AVAILABLE");
  EXPECT_EQ(version["precision"], "fp32");
  EXPECT_EQ(version["device"], "cpu");
  EXPECT_EQ(version["punctuates"], true);
  EXPECT_EQ(version["labels"].size(), cjk_model().metadata.labels.size());
  EXPECT_EQ(models[1]["name"], "bare");
  EXPECT_EQ(models[1]["versions"][0]["punctuates"], false);
}

}  // namespace
}  // namespace halfserve
