#pragma once

#include <deque>
#include <memory>
#include <string>

#include "core/net/stream.h"
#include "core/proto/http1.h"
#include "core/session/client_side.h"
#include "core/session/connector.h"
#include "core/session/server_dispatch.h"
#include "core/session/worker_context.h"

namespace crescent::core {

/// The server side of one exchange (DESIGN §4 "server leg"): the balancer (a Lua pick
/// may wait), the server's maxconn queue, an idle pooled connection or a new one
/// (Connector: retries, redispatch, send_proxy, TLS), then HTTP/1.1 to the server:
/// the request head and body out, the response head and body in, decoded into payload
/// for the exchange. The leg speaks HTTP/1 to servers whatever the client speaks.
///
/// Response heads are read across as many reads as they take, within `bufsize`; the
/// bytes after a head that arrived with it are the body's (a long head split over two
/// reads whose second read also carries body bytes is not "too large"). A reused pooled
/// connection that the server closed before answering is retried once on a fresh
/// connection when the request can be sent again (no body; RFC 9110 §9.2.2 idempotent
/// method). Failures are reported once through Owner::onLegFailed with the status the
/// client gets (when nothing was sent) and HAProxy's termination flags.
///
/// The leg holds the server's slot from assignment to its destruction, and on
/// destruction gives the connection back to the worker's idle pool when the response
/// was complete, the server may keep it, and nothing is left in flight.
class ServerLeg final : private StreamHandler,
                        private Connector::Owner,
                        private ServerDispatch::Owner {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    /// Connected and the request head is on its way: send the request body.
    virtual void onLegReady() = 0;
    /// An interim response (1xx other than 101).
    virtual void onLegInterim(const HttpHead& head) = 0;
    /// The final response head, hop-by-hop and Transfer-Encoding fields removed (Upgrade
    /// kept for a tunnel); `body` its length; `tunnel` for 101 / CONNECT 2xx (the stream
    /// is then takeStream()'s). `rest`: payload bytes that came with the head (a tunnel:
    /// the server's first bytes). Response reading, and onLegEnd() for a body that is
    /// already complete, wait for resumeResponse().
    virtual void onLegResponse(HttpHead& head, BodyLength body, bool tunnel, Buffer rest) = 0;
    /// Response payload.
    virtual void onLegData(Buffer payload) = 0;
    /// The response body is complete; `trailers` (a chunked response's) or null.
    virtual void onLegEnd(const HttpHead* trailers) = 0;
    /// The leg failed: `status` is what the client gets if no response head was sent
    /// (502, 503, 504), `term` the log's termination flags, `after_response` true when
    /// the response head had been handed over already.
    virtual void onLegFailed(int status, const char* term, bool after_response) = 0;
    /// The request's output caught up (below the low-water mark): more body is welcome.
    virtual void onLegDrained() = 0;
  };

  /// Where the request comes from, for send_proxy and X-Forwarded-For (borrowed).
  struct Origin {
    const Address* src = nullptr;
    const Address* dst = nullptr;
    const proxy::Header* proxy = nullptr;
    const tls::Info* tls = nullptr;
  };

  ServerLeg(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t backend_index,
            Owner& owner, Origin origin);
  ~ServerLeg() override;
  ServerLeg(const ServerLeg&) = delete;
  ServerLeg& operator=(const ServerLeg&) = delete;

  /// Picks a server (the backend's Lua balancer through `txn` when it has one; `txn` may
  /// be null), queues when they are full, connects and sends `req` (borrowed for the
  /// leg's life) framed for `body`. `forwardfor`: add X-Forwarded-For. `may_reuse`: an
  /// idle pooled connection may carry it (the backend's http_reuse said so). May report
  /// through the owner before returning (a failure: no server, queue full).
  void start(const HttpHead& req, BodyLength body, bool upgrade, bool forwardfor, bool may_reuse,
             ScriptTxn* txn);
  /// Request body payload (after onLegReady()).
  void sendBody(Buffer payload);
  /// The request body is complete; `trailers` or null.
  void endBody(const HttpHead* trailers);
  /// The request's output is above the high-water mark.
  bool requestBlocked() const;
  /// Stops / resumes reading the response (back-pressure, hooks).
  void pauseResponse();
  void resumeResponse();
  /// After onLegResponse(tunnel = true): the server's stream, its handler unset, and in
  /// `held` the server's bytes read after the ones given with the head (for the client).
  StreamPtr takeStream(std::deque<Buffer>& held);
  /// The exchange answers without this leg (an error page, a hook's reply): the server
  /// connection is closed, the slot released, nothing is reported any more; what the log
  /// needs (server, times) stays.
  void abandon();
  /// The response is complete and the connection may serve another request: the
  /// destructor pools it.
  bool reusable() const;

  bool connected() const { return stream_ != nullptr; }
  bool queued() const { return dispatch_ && dispatch_->queued(); }
  /// Loop time of the server connection's last activity (0 before it exists).
  uint64_t lastActivity() const;
  /// The server of this exchange (the last one tried when it failed), for the log.
  Server* server() const { return log_srv_; }
  uint64_t connectStartMs() const { return t_connect_start_; }
  uint64_t connectedMs() const { return t_connected_; }
  uint64_t queueMs() const { return t_queue_; }
  int retries() const { return retries_; }
  /// `show sess`: "connect", "queue", "exchange".
  const char* stateName() const;

 private:
  // Choosing and connecting (server_leg.cc)
  void dispatched(ServerDispatch::Outcome o);
  void onDispatched(ServerDispatch::Outcome o) override;
  void onQueueGranted(Server& server) override;
  void onQueueTimeout() override;
  void useServer(Server& s);
  void onConnected(StreamPtr stream, Server& server) override;
  void onConnectFailed(ConnectFailure why, Server* last) override;
  void sendRequestHead();
  bool retryOnFreshConnection();
  void releaseSlot();
  void fail(int status, const char* term);
  // Response (server_leg_response.cc)
  void onStreamData(Stream& s, Buffer data) override;
  void onStreamEof(Stream& s) override;
  void onStreamError(Stream& s, int err) override;
  void onStreamDrained(Stream& s) override;
  bool readHead(Buffer& data);
  void onHead(Buffer rest);
  void captureError(const http1::Error& err, std::string_view bytes, size_t offset);
  void readBody(Buffer data);
  bool decode(Buffer& data);
  void deliver();
  void reportEnd();
  void finishOnEof();

  // A call out to owner_ (and fail(), which makes one) may destroy the leg. A member
  // function that goes on after such a call keeps an Alive on its stack and asks it
  // before touching a member again; nested ones chain, and the destructor tells all.
  class Alive {
   public:
// GCC sees a local's address stored in the leg; ~Alive takes it back out before the
// frame ends (and ~ServerLeg only writes through it), so it never dangles.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
    explicit Alive(ServerLeg& leg) : leg_(&leg), prev_(leg.alive_) {
      leg.alive_ = this;
    }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    ~Alive() {
      if (!gone_) leg_->alive_ = prev_;
    }
    Alive(const Alive&) = delete;
    Alive& operator=(const Alive&) = delete;
    explicit operator bool() const {
      return !gone_;
    }

   private:
    friend class ServerLeg;
    ServerLeg* leg_;
    Alive* prev_;
    bool gone_ = false;
  };
  Alive* alive_ = nullptr;

  WorkerContext& w_;
  std::shared_ptr<WorkerGeneration> wg_;
  size_t backend_;
  Owner& owner_;
  Origin origin_;
  const HttpHead* req_ = nullptr;
  BodyLength req_body_;
  bool upgrade_ = false;
  bool forwardfor_ = false;
  bool may_reuse_ = true;
  uint64_t server_idle_ms_ = 0;  // from the server's `Keep-Alive: timeout=N`, 0: none
  std::unique_ptr<ServerDispatch> dispatch_;
  std::unique_ptr<Connector> connector_;
  StreamPtr stream_;
  Server* srv_ = nullptr;      // slot held
  Server* log_srv_ = nullptr;  // for the log
  bool reused_ = false;        // stream_ came from the idle pool
  bool retried_fresh_ = false;
  bool req_sent_ = false;    // the whole request went out
  bool chunk_open_ = false;  // a chunk of a kStream request body awaits its CRLF
  bool failed_ = false;

  Buffer head_buf_;
  http1::HeadParser parser_;
  HttpHead resp_;
  http1::Framing framing_;
  http1::BodyDecoder body_;
  bool head_done_ = false;
  bool resp_done_ = false;
  bool paused_ = false;
  BufferQueue held_;       // response bytes read while paused
  BufferQueue decoded_;    // payload pieces of one read beyond the first buffer
  bool eof_held_ = false;  // the server closed while paused
  bool end_reported_ = false;
  bool keep_ = true;  // the server may keep the connection (no stray bytes, keep-alive)

  uint64_t t_connect_start_ = 0, t_connected_ = 0, t_queue_ = 0, t_resp_ = 0;
  int retries_ = 0;
  int status_ = 0;
};

}  // namespace crescent::core
