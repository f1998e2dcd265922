#pragma once

#include <memory>
#include <optional>

#include "core/net/stream.h"
#include "core/session/connection_info.h"
#include "core/session/connector.h"
#include "core/session/server_dispatch.h"
#include "core/session/tunnel.h"
#include "core/session/worker_context.h"

namespace crescent::core {

/// A TCP-mode session (DESIGN §4): accept, pick a backend (use_backend rules on `src` /
/// `dst_port`, then default_backend), connect with retries, then a Tunnel until both sides
/// finish or a timeout fires. Ends with one tcplog line.
///
/// Lifetime: created by the worker on accept, linked into the worker's session list, and
/// handed to WorkerContext::endSession() when done (deleted on a later loop turn).
class TcpSession final : public Session,
                         private Connector::Owner,
                         private ServerDispatch::Owner,
                         private StreamHandler,
                         private Tunnel::Owner {
 public:
  TcpSession(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t frontend_index,
             StreamPtr client);
  ~TcpSession() override;

  /// Begins with what the accept side learned (addresses, PROXY header, early bytes).
  void start(ConnectionInfo info);
  void abort() override;
  uint64_t generationId() const override;
  std::string describe() const override;

 private:
  void onConnected(StreamPtr stream, Server& server) override;
  void onConnectFailed(ConnectFailure why, Server* last) override;
  void onTunnelEnd(TunnelEnd why) override;
  void onDispatched(ServerDispatch::Outcome o) override;
  void onQueueGranted(Server& server) override;
  void onQueueTimeout() override;
  void dispatched(ServerDispatch::Outcome o);
  // The client while its session waits in a queue: a disconnect leaves the queue.
  void onStreamData(Stream& s, Buffer data) override;
  void onStreamEof(Stream& s) override;
  void onStreamError(Stream& s, int err) override;
  void connect(Server& server);
  void releaseSlot();
  void finish(const char* state);
  void writeLog(const char* state);

  WorkerContext& w_;
  std::shared_ptr<WorkerGeneration> wg_;  // keeps the generation alive while we run
  const FrontendConfig& fe_;
  size_t fe_index_;
  StreamPtr client_;
  StreamPtr server_;
  std::unique_ptr<ServerDispatch> dispatch_;
  std::unique_ptr<Connector> connector_;
  std::unique_ptr<Tunnel> tunnel_;
  Server* srv_ = nullptr;            // slot held while connected
  const Server* srv_log_ = nullptr;  // last server tried, for the log
  int backend_ = -1;
  Address src_, dst_;
  std::shared_ptr<const proxy::Header> proxy_;  // received PROXY header, or null
  std::shared_ptr<const tls::Info> tls_;        // TLS terminated on the bind, or null
  HttpHead no_request_;                         // TCP mode: txn.req is nil
  RequestContext ctx_;                          // what the session's hooks see
  std::unique_ptr<ScriptTxn> txn_;              // when a hook needs one; before dispatch_
  uint64_t accept_ms_ = 0, accept_wall_ = 0, connected_ms_ = 0;
  Buffer early_;  // client bytes received while queued (one buffer, then reading stops)
  bool done_ = false;
};

}  // namespace crescent::core
