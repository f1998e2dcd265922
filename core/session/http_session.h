#pragma once

#include <deque>
#include <memory>
#include <string>

#include "core/filters/compression.h"
#include "core/net/stream.h"
#include "core/net/timer.h"
#include "core/proto/http1.h"
#include "core/session/connection_info.h"
#include "core/session/connector.h"
#include "core/session/server_dispatch.h"
#include "core/session/tunnel.h"
#include "core/session/worker_context.h"

namespace crescent::core {

/// An HTTP/1.x client connection (DESIGN §4): a loop of exchanges (request/response
/// pairs) on one client connection, each routed and forwarded on its own, then either the
/// next request (keep-alive, each served by the newest generation), a tunnel (Upgrade /
/// CONNECT), or close.
///
/// Per exchange: read the request head (timeout http_request) -> validate framing (400 on
/// anything that enables smuggling) -> http_request Lua hook -> use_backend / default ->
/// a Lua service, or a server (idle pooled connection or Connector) -> stream the request
/// body -> read the response head (timeout server: 504) -> stream the response body ->
/// one httplog line. Bodies are streamed buffer by buffer, never held whole (Lua services
/// excepted: they get the whole body, up to kMaxServiceBody).
///
/// Lifetime as TcpSession: owned by the worker's list, ended through endSession().
class HttpSession final : public Session,
                          private StreamHandler,
                          private Connector::Owner,
                          private ServerDispatch::Owner,
                          private Tunnel::Owner {
 public:
  /// Largest request body a Lua service may receive (bytes); larger gets 413.
  static constexpr size_t kMaxServiceBody = 8 * 1024 * 1024;

  HttpSession(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t frontend_index,
              StreamPtr client);
  ~HttpSession() override;

  /// Begins with what the accept side learned (addresses, PROXY header, early bytes).
  void start(ConnectionInfo info);
  void abort() override;
  uint64_t generationId() const override;
  void onNewGeneration() override;
  void drain() override;
  std::string describe() const override;

 private:
  enum class State {
    kWaitRequest,  // keep-alive idle, no byte of the next request yet
    kReadHead,     // part of a request head received
    kConnecting,   // waiting for a server connection
    kExchange,     // request/response flowing through a server connection
    kService,      // reading a request body for a Lua service
    kTunnel,       // after 101 / CONNECT 2xx
    kClosing,      // response sent, draining the client before close
  };

  // StreamHandler (client and server streams)
  void onStreamData(Stream& s, Buffer data) override;
  void onStreamEof(Stream& s) override;
  void onStreamError(Stream& s, int err) override;
  void onStreamDrained(Stream& s) override;
  void onStreamShutdownDone(Stream& s) override;
  // Connector::Owner
  void onConnected(StreamPtr stream, Server& server) override;
  void onConnectFailed(ConnectFailure why, Server* last) override;
  // ServerDispatch::Owner
  void onQueueGranted(Server& server) override;
  void onQueueTimeout() override;
  // Tunnel::Owner
  void onTunnelEnd(TunnelEnd why) override;

  // Client side (http_session.cc)
  void processClient();
  bool readRequestHead();
  void onRequestHead();
  void routeRequest(int backend_index);
  void forwardRequestBody();
  void readServiceBody();
  void runService();
  void sendLocalResponse(int status,
                         const std::vector<std::pair<std::string, std::string>>& headers,
                         std::string_view body, bool keep_alive);
  void sendError(int status, const char* term);
  bool compressWhole(std::string_view body, compression::Algo algo, std::string& out);
  void onClientEof();
  void endExchange();
  void beginClosing();
  void finish();

  // Server side (http_session_server.cc)
  void connectToServer();
  void useServer(Server& s);
  void releaseSlot();
  void sendRequestHead();
  void onServerData(Buffer data);
  bool readResponseHead(Buffer& data);
  void onResponseHead(Buffer rest);
  void forwardResponseBody(Buffer data, std::string head = {});
  void onServerEof();
  void startTunnel(Buffer to_client);
  void releaseServer(bool reusable);
  void abortExchange(const char* term);
  bool retryOnFreshConnection();

  // Timeouts (http_session.cc)
  void armTimer();
  static void onTimer(void* ctx);
  void checkTimeouts();

  void writeClient(std::string s);
  void writeClient(Buffer b);
  void writeClient(std::string head, Buffer b);
  void logExchange();
  void resetExchange();
  // Between requests: moves to the newest generation when it has this frontend.
  void moveToNewest();

  WorkerContext& w_;
  std::shared_ptr<WorkerGeneration> wg_;  // generation of the current exchange
  size_t fe_index_;
  const FrontendConfig* fe_;
  StreamPtr client_;
  StreamPtr server_;
  TimerPtr timer_;
  std::unique_ptr<ServerDispatch> dispatch_;
  std::unique_ptr<Connector> connector_;
  std::unique_ptr<Tunnel> tunnel_;
  State state_ = State::kWaitRequest;
  Address src_, dst_;
  std::shared_ptr<const proxy::Header> proxy_;  // received PROXY header, or null
  std::shared_ptr<const tls::Info> tls_;        // TLS terminated on the bind, or null
  bool first_request_ = true;
  bool in_process_ = false;  // processClient() is on the stack
  bool client_eof_ = false;
  bool done_ = false;
  bool draining_ = false;  // soft stop: no request after the current one

  std::deque<Buffer> client_in_;  // client bytes not processed yet (pipelined, or waiting)

  // --- the current exchange ---
  Buffer req_buf_;  // the request head's bytes: req_'s views point here
  http1::HeadParser req_parser_;
  HttpHead req_;
  http1::Framing req_framing_;
  http1::BodyDecoder req_body_;
  bool req_done_ = false;
  bool client_keep_alive_ = true;
  std::string service_body_;

  int backend_ = -1;
  Server* srv_ = nullptr;      // slot held while the exchange uses the server
  Server* log_srv_ = nullptr;  // the server of this exchange, for its log line
  bool reused_conn_ = false;   // server_ came from the idle pool
  bool retried_fresh_ = false;
  Buffer resp_buf_;
  http1::HeadParser resp_parser_;
  HttpHead resp_;
  http1::Framing resp_framing_;
  http1::BodyDecoder resp_body_;
  bool resp_head_done_ = false;
  bool resp_done_ = false;
  bool server_reusable_ = true;
  bool dechunk_ = false;  // HTTP/1.0 client, chunked response: forward payload only

  // log fields of the current exchange (loop times in ms, 0 = not reached)
  uint64_t t_accept_ = 0, t_req_start_ = 0, t_head_ = 0, t_connect_start_ = 0, t_connected_ = 0,
           t_resp_ = 0, t_queue_ = 0;
  uint64_t wall_req_start_ = 0;
  uint64_t bytes_to_client_ = 0;
  int status_ = -1;
  int retries_ = 0;
  std::string term_ = "--";
  std::string request_line_;
  uint64_t keepalive_since_ = 0;

  // compression (http_session_server.cc, core/filters/compression.h) ----------------------
  // The response filter of DESIGN §4: decided on the response head, then every payload byte
  // goes through encoder_ and leaves as chunks (HTTP/1.1 client) or close-delimited (1.0).
  void noteRequestForCompression();
  const CompressionConfig& compressionConfig() const;
  compression::Verdict startCompression();
  void compressResponseBody(Buffer data, std::string head);
  [[nodiscard]] bool finishCompression();
  void writeCompressed(std::string head);
  compression::RequestFacts gz_req_;  // from the request head, taken before it is forwarded
  std::unique_ptr<compression::Encoder> encoder_;  // non-null while a response is compressed
  std::vector<Buffer> gz_out_;  // encoder output not written yet (kept for its capacity)
};

}  // namespace crescent::core
