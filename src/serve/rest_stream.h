#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "halfserve/serve/metrics.h"
#include "halfserve/serve/model_manager.h"
#include "serve/http_front.h"
#include "serve/punctuation_stream.h"
#include "serve/websocket_hub.h"

// The REST port's streaming punctuation (not part of TF Serving): GET /v1/models/NAME[/versions/V|/labels/L]:stream
// upgraded to a WebSocket, then JSON text messages both ways (docs/streaming.md, "WebSocket"):
//   client  {"window": W, "stride": S}     optional, first message only: the stream's settings
//           {"text": "piece", "flush": true}  any number; either field may be left out
//   server  {"window", "stride", "lookahead_tokens", "model", "version"}   the answer to a settings message
//           {"committed": "…", "words": [{"text", "label", "mark", "probability"}], "pending_bytes": N}
//           with "final": true after a flush; {"error": "…"} for a message that could not be taken (the stream
//           goes on).
namespace halfserve::rest {

// The request headers a handshake reads (for HttpFrontOptions::request_headers).
const std::vector<std::string>& websocket_request_headers();

// The headers of the 101 reply to a valid WebSocket handshake (Upgrade and Sec-WebSocket-Accept). Throws HttpError
// 400 naming what is missing or wrong (a GET with Upgrade: websocket, Connection: Upgrade, a Sec-WebSocket-Key of
// 16 bytes in base64, Sec-WebSocket-Version: 13), 426 for another version (the reply then names 13 in
// Sec-WebSocket-Version).
std::vector<std::pair<std::string, std::string>> websocket_handshake(const HttpRequest& request);

// One stream's JSON protocol on a served version. `metrics_model` is the model's metrics label; each message is
// counted as a request with API "stream", entrypoint "REST".
class PunctuationStreamSession : public WebSocketSession {
 public:
  // Throws ServingError (FAILED_PRECONDITION) for a model that cannot punctuate, before anything is upgraded.
  PunctuationStreamSession(std::shared_ptr<ServedVersion> served, ServingMetrics& metrics, std::string metrics_model);
  std::vector<std::string> on_message(std::string message, bool text) override;

 private:
  std::string answer(const std::string& message, bool text);

  std::shared_ptr<ServedVersion> served_;
  ServingMetrics& metrics_;
  std::string metrics_model_;
  std::unique_ptr<PunctuationStream> stream_;  // with the default settings until the first message says otherwise
  bool opened_ = false;  // a message has been taken: the settings are fixed
};

}  // namespace halfserve::rest
