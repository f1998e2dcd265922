#pragma once

#include <cstdint>

#include "core/net/stream.h"
#include "core/net/timer.h"
#include "core/proto/proxy_protocol.h"
#include "core/session/generation.h"

namespace crescent::core {

/// Why no server connection could be made, for the status and the termination state.
enum class ConnectFailure {
  kNoServer,  ///< no usable server (all weight 0, full, or none): 503, "SC"
  kError,     ///< refused/unreachable after every retry: 502, "SC"
  kTimeout,   ///< `timeout connect` after every retry: 504, "sC"
};

/// Connects to a server whose slot is held, with `timeout connect` per attempt, `retries`
/// further attempts, and `redispatch` (the last attempt goes to another server with a
/// free slot, chosen by the backend's algorithm). Holds the server's slot until the
/// connection is handed over: then the owner holds it and releases it.
class Connector : private StreamHandler {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    /// Connected: the owner takes the stream (handler unset) and the server slot.
    virtual void onConnected(StreamPtr stream, Server& server) = 0;
    /// Failed; `last` is the last server tried (its slot already released), or null.
    virtual void onConnectFailed(ConnectFailure why, Server* last) = 0;
  };

  Connector(EventLoop& loop, WorkerGeneration& wg, size_t backend_index, Owner& owner);
  ~Connector() override;

  /// Starts with `acquired`: a server whose slot the caller holds (ServerDispatch); the
  /// connector owns that slot from now on. Redispatch moves it to another server.
  void start(Server& acquired);
  /// The client side, for servers with `send_proxy`: its addresses and the PROXY header
  /// it came with (TLVs passed on), all borrowed from the owner for the connector's life.
  void setOrigin(const Address* src, const Address* dst, const proxy::Header* received) {
    origin_src_ = src;
    origin_dst_ = dst;
    origin_proxy_ = received;
  }
  /// Attempts made so far beyond the first (the log's retries field).
  int retries() const { return attempts_ > 0 ? attempts_ - 1 : 0; }
  /// Loop time when the first attempt started / when the connection was established.
  uint64_t startedAt() const { return started_at_; }

 private:
  void attempt(Server* server);
  void fail(ConnectFailure why);
  void writeProxyHeader(Stream& out, Server& srv);
  void onStreamData(Stream&, Buffer) override {}
  void onStreamEof(Stream&) override {}
  void onStreamError(Stream&, int) override {}
  void onStreamConnected(Stream& s, int status) override;
  void onStreamTlsReady(Stream& s, int status) override;  // TLS to the server (tls.enabled)
  void handOver();
  static void onTimer(void* ctx);
  /// `why`: the reason given to the server's observe(); null: from `timed_out`.
  void retry(bool timed_out, const char* why = nullptr);

  EventLoop& loop_;
  WorkerGeneration& wg_;
  Backend& backend_;
  Owner& owner_;
  StreamPtr stream_;
  TimerPtr timer_;
  Server* server_ = nullptr;
  int attempts_ = 0;
  bool connected_now_ = false;  // an abstract UNIX connect succeeded synchronously
  const Address* origin_src_ = nullptr;
  const Address* origin_dst_ = nullptr;
  const proxy::Header* origin_proxy_ = nullptr;
  uint64_t started_at_ = 0;
};

}  // namespace crescent::core
