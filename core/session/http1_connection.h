#pragma once

#include <deque>
#include <memory>
#include <string>

#include "core/net/stream.h"
#include "core/net/timer.h"
#include "core/proto/http1.h"
#include "core/session/client_side.h"
#include "core/session/connection_info.h"
#include "core/session/exchange.h"
#include "core/session/worker_context.h"

namespace crescent::core {

/// An HTTP/1.x client connection (DESIGN §4 "client connection", the HTTP/1 codec): it
/// reads request heads (timeout http_request, 400 on anything that enables smuggling),
/// makes one Exchange of each, feeds it the decoded request body, frames the exchange's
/// response for HTTP/1 (Content-Length, chunked for HTTP/1.1, close-delimited for
/// HTTP/1.0; Connection: close / keep-alive), and then serves the next request
/// (keep-alive; the newest generation serves it), hands the stream to a tunnel (Upgrade
/// / CONNECT), or closes: FIN after the last byte, then a linger that reads and discards
/// so that unread client bytes do not turn the close into a reset.
///
/// Pipelined requests wait in the connection until the exchange before them ended.
/// Requests that fail before an exchange exists (a malformed head, a head not received in
/// time) get their error page and log line here.
///
/// One place where the connection dies: finish(). Lifetime: owned by the worker's list
/// (Session), ended through WorkerContext::endSession().
class Http1Connection final : public Session, private StreamHandler, private ClientSide {
 public:
  Http1Connection(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t frontend_index,
                  StreamPtr client);
  ~Http1Connection() override;

  /// Begins with what the accept side learned (addresses, PROXY header, early bytes).
  void start(ConnectionInfo info);
  void abort() override;
  uint64_t generationId() const override;
  void onNewGeneration() override;
  void drain() override;
  std::string describe() const override;

 private:
  enum class State {
    kIdle,      // keep-alive idle, no byte of the next request yet
    kHead,      // part of a request head received
    kExchange,  // an exchange runs
    kTunnel,    // the exchange pumps a tunnel over our stream
    kClosing,   // response sent, draining the client before close
  };

  // StreamHandler
  void onStreamData(Stream& s, Buffer data) override;
  void onStreamEof(Stream& s) override;
  void onStreamError(Stream& s, int err) override;
  void onStreamDrained(Stream& s) override;
  void onStreamShutdownDone(Stream& s) override;

  // ClientSide
  void resumeRequestBody() override;
  void pauseRequestBody() override;
  void continueRequest() override;
  void mustClose() override;
  void sendInterimResponse(const HttpHead& head) override;
  void sendResponseHead(HttpHead& head, BodyLength body, Buffer first) override;
  void sendResponseHead(HttpHead& head, BodyLength body, Bytes first) override;
  void sendResponseData(Buffer data) override;
  void sendResponseEnd(const HttpHead* trailers) override;
  bool responseBlocked() const override;
  uint64_t clientLastActivity() const override;
  size_t clientPendingBytes() const override;
  uint64_t responseBytes() const override { return bytes_; }
  Stream* startTunnel(std::deque<Buffer>& pending) override;
  void onExchangeEnd(bool complete) override;

  void process();
  bool readHead();
  void onHead();
  void deliverBody();
  /// Serializes the final response head framed for `body` (HTTP/1).
  std::string frameHead(HttpHead& head, BodyLength body);
  void write(std::string s);
  void write(Bytes b);
  void write(std::string head, Buffer b);
  /// An error before any exchange: the page, the log line, then close.
  void refuse(int status, const char* term);
  /// The bytes of a refusal with `status`, which becomes the status sent.
  std::string refusalPage(int& status);
  void captureError(const http1::Error& err, std::string_view bytes, size_t offset);
  void beginClosing();
  void finish();
  void resetRequest();
  void moveToNewest();
  void armTimer();
  /// kIdle: the wait allowed for the next request (ms, 0: none).
  uint64_t idleTimeout() const;
  /// kIdle: ms left before the connection times out at `now`; 0 once it has.
  uint64_t idleWaitLeft(uint64_t now) const;
  static void onTimer(void* ctx);
  void checkTimeouts();

  WorkerContext& w_;
  std::shared_ptr<WorkerGeneration> wg_;  // generation of the current request
  size_t fe_index_;
  const FrontendConfig* fe_;
  StreamPtr client_;
  TimerPtr timer_;
  State state_ = State::kIdle;
  Address src_, dst_;
  std::shared_ptr<const proxy::Header> proxy_;  // received PROXY header, or null
  std::shared_ptr<const tls::Info> tls_;        // TLS terminated on the bind, or null
  std::unique_ptr<Exchange> exchange_;
  std::deque<Buffer> client_in_;  // client bytes not processed yet (pipelined, or waiting)
  uint64_t t_accept_ = 0;
  uint64_t keepalive_since_ = 0;
  bool first_request_ = true;
  bool in_process_ = false;  // process() is on the stack
  bool client_eof_ = false;
  bool client_failed_ = false;  // reset or write error: nothing more can be sent
  bool aborting_ = false;       // hard stop
  bool done_ = false;
  bool draining_ = false;  // soft stop: no request after the current one

  // --- the current request ---
  Buffer req_buf_;  // the request head's bytes (the exchange keeps them)
  http1::HeadParser parser_;
  HttpHead head_;
  http1::Framing framing_;
  http1::BodyDecoder body_;
  uint64_t t_req_start_ = 0;
  uint64_t wall_req_start_ = 0;
  bool body_wanted_ = false;  // the exchange takes body now
  bool body_done_ = true;
  bool keep_alive_ = true;    // this connection may carry another request
  bool head_method_ = false;  // HEAD: a response body is never sent
  int version_minor_ = 1;
  bool expect_continue_ = false;
  bool continue_sent_ = false;
  // --- the current response ---
  bool resp_chunked_ = false;  // payload leaves as chunks
  bool chunk_open_ = false;    // a chunk awaits its CRLF (sent with the next size line)
  uint64_t bytes_ = 0;
};

}  // namespace crescent::core
