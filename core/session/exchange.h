#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/filters/compression.h"
#include "core/net/timer.h"
#include "core/proto/http_head.h"
#include "core/session/client_side.h"
#include "core/session/hooks.h"
#include "core/session/server_leg.h"
#include "core/session/tunnel.h"
#include "core/session/worker_context.h"

namespace crescent::core {

/// What an exchange knows of the client connection it came on. Borrowed: the
/// connection outlives its exchanges.
struct ExchangeOrigin {
  const Address& src;  ///< after the PROXY header, when one was received
  const Address& dst;
  const proxy::Header* proxy = nullptr;  ///< the PROXY header received, or null
  const tls::Info* tls = nullptr;        ///< TLS crescent terminated on the bind, or null
};

/// One request/response (DESIGN §4; HAProxy's stream, Envoy's active stream), whatever
/// the client's protocol: the client connection's codec parses a request head, makes an
/// Exchange of it and feeds it the request body; the exchange runs the phases in their
/// fixed order (docs/lua-api.md, "Phases"):
///
///   http_request hook -> routing (use_backend, default_backend) -> a Lua service, or
///   the server leg (balancer pick, queue, connect, forward) -> response head ->
///   http_response hooks (backend's, then frontend's) -> compression -> response body
///   -> log phase and the traffic log line
///
/// Responses crescent makes itself (a hook's reply, a service's, 4xx/5xx errors) go
/// through the same http_response hooks and compression. Hooks run through a ScriptTxn
/// (one per exchange, when the frontend or backend has any hook): one that waits
/// suspends the exchange; its timeout keeps running (`timeout client` while a request
/// hook or the balancer waits, `timeout server` while a response hook waits), and the
/// client leaving cancels the wait.
///
/// One place ends an exchange: finish(), which runs the log phase, writes the log line,
/// gives the server connection back (to the pool when reusable) and the server slot,
/// and tells the client side as its last act (ClientSide::onExchangeEnd). After a 101
/// or a CONNECT 2xx the exchange pumps a Tunnel between the client's and the server's
/// streams and ends with it.
///
/// Lifetime: owned by its client connection; may be destroyed only through the loop's
/// deferred delete once onExchangeEnd() was called, or by the connection's destructor.
class Exchange final : public Deletable,
                       private ServerLeg::Owner,
                       private ScriptWaiter,
                       private Tunnel::Owner {
 public:
  /// The request as the codec parsed it. `head`'s views may point into `head_bytes`,
  /// which the exchange keeps for its life.
  struct Request {
    Buffer head_bytes;
    HttpHead head;
    BodyLength body;
    bool upgrade = false;     ///< Upgrade (HTTP/1.1) or CONNECT: may become a tunnel
    bool first = true;        ///< the client connection's first request (http_reuse)
    std::string line;         ///< "GET / HTTP/1.1" for the log
    uint64_t started_ms = 0;  ///< loop time of its first byte
    uint64_t head_ms = 0;     ///< loop time its head was complete
    uint64_t started_wall_ms = 0;
  };

  /// `frontend_index` indexes wg's frontends. The exchange does nothing until start().
  Exchange(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t frontend_index,
           ClientSide& client, const ExchangeOrigin& origin, Request req);
  ~Exchange() override;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  /// Runs the phases. May end the exchange before it returns.
  void start();

  /// Request body payload from the codec (after resumeRequestBody()).
  void onRequestBody(Buffer payload);
  /// The request body is complete; `trailers` (chunked HTTP/1) or null.
  void onRequestEnd(const HttpHead* trailers);
  /// The request body's framing is broken (`reason` for the log): 400 when nothing was
  /// answered yet, else the exchange is cut.
  void onRequestError(const std::string& reason);
  /// The client half-closed. A request still being received, queued, or waiting on a
  /// hook is abandoned; otherwise the response still goes out.
  void onClientEof();
  /// The client connection failed (reset, write error): the exchange is cut.
  void onClientError();
  /// Response output fell below the low-water mark.
  void onClientDrained();
  /// Ends the exchange now with termination `term` (a hard stop: "KD"), logged.
  void abort(const char* term);
  /// Soft stop: the response will say the connection closes, if it has not started.
  void drain();

  /// True once the response head was handed to the client side.
  bool responseStarted() const { return resp_head_sent_; }
  /// The state word and the server, for `show sess`.
  std::string describe() const;

 private:
  enum class Phase {
    kRequestHook,   // http_request hook runs / waits
    kServiceBody,   // gathering the request body for a Lua service
    kService,       // the service runs / waits
    kServer,        // the server leg: pick, queue, connect, exchange with the server
    kResponseHook,  // an http_response hook runs / waits
    kResponse,      // the response body flows to the client
    kTunnel,        // after 101 / CONNECT 2xx
    kDone,
  };

  // Request side (exchange.cc)
  void runRequestHook();
  void onRequestHookDone();
  void route(int backend);
  void startService();
  void runService();
  /// The admin listener's requests: answered by the worker's BuiltinService.
  void runBuiltinService();
  void onServiceDone();
  void releaseServiceBody();
  void startServerLeg();
  // ServerLeg::Owner
  void onLegReady() override;
  void onLegInterim(const HttpHead& head) override;
  void onLegResponse(HttpHead& head, BodyLength body, bool tunnel, Buffer rest) override;
  void onLegData(Buffer payload) override;
  void onLegEnd(const HttpHead* trailers) override;
  void onLegFailed(int status, const char* term, bool after_response) override;
  void onLegDrained() override;
  // ScriptWaiter
  void onScriptDone() override;
  // Tunnel::Owner
  void onTunnelEnd(TunnelEnd why) override;

  // Response side (exchange_response.cc)
  /// A response crescent makes: the hook's reply, a service's, an error page.
  void sendLocal(int status, std::string_view reason,
                 const std::vector<std::pair<std::string, std::string>>& headers, Bytes body);
  void sendError(int status, const char* term);
  void sendPage(int status, const std::vector<std::pair<std::string, std::string>>& headers,
                Bytes body);
  /// Runs the next http_response hook on resp_ (kResponseHook), then sendResponse().
  void runResponseHooks();
  void onResponseHookDone();
  bool applyResponseDecision();
  /// The response head is final: compression, then the client side.
  void sendResponse();
  void forwardBody(Buffer payload);
  void endResponse(const HttpHead* trailers);
  void startTunnel();
  // Compression (exchange_response.cc)
  const CompressionConfig& compressionConfig() const;
  void noteRequestForCompression();
  compression::Verdict startCompression();
  bool compressWhole(std::string_view body, compression::Algo algo, std::string& out);

  // Lifetime and timeouts (exchange.cc)
  void finish(const char* term);
  void maybeFinish();
  void armTimer();
  static void onTimer(void* ctx);
  void checkTimeouts();
  void writeLog();
  ScriptTxn* txn();

  WorkerContext& w_;
  std::shared_ptr<WorkerGeneration> wg_;
  size_t fe_index_;
  const FrontendConfig& fe_;
  ClientSide& client_;
  ExchangeOrigin origin_;
  Request req_;
  RequestContext ctx_;
  TimerPtr timer_;
  Phase phase_ = Phase::kRequestHook;
  bool txn_made_ = false;
  std::unique_ptr<ScriptTxn> txn_;  // made on first use; destroyed (cancelled) by finish()

  int backend_ = -1;
  std::unique_ptr<ServerLeg> leg_;
  std::unique_ptr<Tunnel> tunnel_;
  StreamPtr tunnel_server_;  // the server's stream during a tunnel

  // request
  bool req_done_ = false;
  bool body_wanted_ = false;  // resumeRequestBody() in force
  std::string service_body_;
  uint64_t service_reserved_ = 0;  // bytes of service_body_ taken from BodyBudget
  const HttpHead* req_trailers_ = nullptr;

  // response
  HookDecision decision_;  // of the hook that runs
  ServiceResponse service_resp_;
  HttpHead local_resp_;       // a response crescent made
  HttpHead* resp_ = nullptr;  // the response: local_resp_, or the server leg's head
  BodyLength resp_body_;
  Buffer resp_rest_;         // payload that came with the head, held while hooks run
  Bytes local_body_;         // a local response's body, held while hooks run
  bool resp_local_ = false;  // resp_ is a response crescent made
  bool resp_tunnel_ = false;
  bool resp_hooks_set_ = false;
  size_t resp_hook_ = 0;  // next of resp_hooks_ to run
  std::vector<int> resp_hooks_;
  bool resp_hooks_failed_ = false;  // an http_response hook failed: none runs again
  bool resp_head_sent_ = false;
  bool resp_done_ = false;
  bool must_close_ = false;
  compression::RequestFacts gz_req_;
  std::unique_ptr<compression::Encoder> encoder_;  // non-null while a response is compressed
  std::vector<Buffer> gz_out_;

  // log
  int status_ = -1;
  std::string term_ = "--";
  uint64_t t_resp_ = 0;
  bool finished_ = false;
};

}  // namespace crescent::core
