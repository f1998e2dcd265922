#pragma once

#include <memory>

#include "core/net/stream.h"
#include "core/net/timer.h"
#include "core/proto/proxy_protocol.h"
#include "core/session/connection_info.h"
#include "core/session/worker_context.h"

namespace crescent::core {

/// Starts the session of an accepted connection: directly, or after the accept-side
/// handshake of its bind (DESIGN §4: accept -> [PROXY header] -> [TLS] -> session).
/// `bind_index` indexes the frontend's binds. Called on the worker's thread.
void startSession(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t frontend_index,
                  size_t bind_index, StreamPtr client);

/// Creates and starts the frontend's TCP or HTTP session for a connection whose
/// handshake (if any) is done.
void startFrontendSession(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg,
                          size_t frontend_index, StreamPtr client, ConnectionInfo info);

/// The accept-side handshake of one connection on a bind with `accept_proxy` and/or
/// `tls`: reads the PROXY v1/v2 header (a header split across reads is waited for), then
/// runs the TLS handshake (its first bytes may have come with the header), all within
/// `timeout handshake` (default `timeout client`), then hands the connection, the
/// addresses the header carries, the bytes after it and what the TLS handshake agreed on
/// (ConnectionInfo::tls) to the frontend's session (with TLS, the session reads plaintext
/// from the same Stream). Anything that is not a valid
/// header, a failed TLS handshake, a close, or the timeout ends the connection with one
/// warning line naming the frontend, the peer and the reason. Nothing is guessed:
/// without a header no byte reaches the session. A TLS handshake that succeeds is logged
/// with one info line (version, cipher, SNI, ALPN, resumed).
///
/// With a `tcp_request` hook on the frontend, the hook runs between the PROXY header and
/// TLS (before any protocol): it sees the bytes received (conn:peek, conn.sni from the
/// ClientHello) without consuming them, may wait, and decides (conn:reject,
/// conn:use_backend); the bytes then go to TLS or the session. It is bounded by the
/// frontend's `timeout client`.
///
/// A Session of its own (linked into the worker's list, so a hard stop reaches it).
class Handshake final : public Session,
                        private StreamHandler,
                        private ConnectionPeek,
                        private ScriptWaiter {
 public:
  Handshake(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t frontend_index,
            size_t bind_index, StreamPtr client);
  ~Handshake() override;

  void start();
  void abort() override;
  uint64_t generationId() const override;
  std::string describe() const override;

 private:
  void onStreamData(Stream& s, Buffer data) override;
  void onStreamEof(Stream& s) override;
  void onStreamError(Stream& s, int err) override;
  void onStreamTlsReady(Stream& s, int status) override;
  static void onTimer(void* ctx);
  void fail(const std::string& why);
  void proxyDone(Buffer rest);
  void startTls(Buffer rest);
  void handOff(Buffer rest);
  // The tcp_request phase
  void startInspect(Buffer rest);
  void onScriptDone() override;
  std::string_view received() const override { return peeked_; }
  bool ended() const override { return peer_ended_; }
  void notifyMore(PeekWaiter* w) override { peek_waiter_ = w; }
  uint64_t inspectDelayMs() const override;
  void wakePeek();

  WorkerContext& w_;
  std::shared_ptr<WorkerGeneration> wg_;
  size_t fe_index_;
  size_t bind_index_;
  StreamPtr client_;
  TimerPtr timer_;
  proxy::Parser parser_;
  Address peer_;
  ConnectionInfo info_;  // filled as the steps complete
  bool in_tls_ = false;  // the PROXY step is over; the TLS handshake runs
  bool done_ = false;
  // tcp_request
  bool inspecting_ = false;
  std::string peeked_;  // bytes received while the hook runs, for what follows it
  bool peer_ended_ = false;
  PeekWaiter* peek_waiter_ = nullptr;
  HttpHead no_request_;
  std::unique_ptr<RequestContext> ctx_;  // refers to info_'s addresses
  std::unique_ptr<ScriptTxn> txn_;
  ConnDecision decision_;
};

}  // namespace crescent::core
