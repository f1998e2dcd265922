#pragma once

#include <cstdint>

#include "core/config/config.h"
#include "core/net/stream.h"
#include "core/net/timer.h"

namespace crescent::core {

/// Timeouts that govern a tunnel, in ms (0 = none). With `tunnel` set, the tunnel closes
/// after `tunnel` ms without traffic in EITHER direction (reset by traffic either way,
/// reference/000); otherwise each side has its own inactivity timeout (`client`,
/// `server`), replaced by `client_fin` / `server_fin` once that side has sent its FIN.
struct TunnelTimeouts {
  uint64_t tunnel = 0;
  uint64_t client = 0;
  uint64_t server = 0;
  uint64_t client_fin = 0;
  uint64_t server_fin = 0;

  /// A session's tunnel timeouts: client side from the frontend, server side and
  /// `tunnel` from the backend (HAProxy takes `timeout tunnel` from the backend).
  static TunnelTimeouts from(const Timeouts& frontend, const Timeouts& backend) {
    TunnelTimeouts t;
    t.tunnel = backend.tunnel;
    t.client = frontend.client;
    t.server = backend.server;
    t.client_fin = frontend.client_fin;
    t.server_fin = backend.server_fin;
    return t;
  }
};

/// Why a tunnel ended, for the log's termination state (HAProxy's flags).
enum class TunnelEnd {
  kClosed,         ///< both sides finished cleanly ("--")
  kClientAbort,    ///< client reset/error ("CD")
  kServerAbort,    ///< server reset/error ("SD")
  kClientTimeout,  ///< client-side or tunnel inactivity ("cD")
  kServerTimeout,  ///< server-side inactivity ("sD")
};

/// A bidirectional byte pump between two connected streams (TCP mode, WebSocket after
/// Upgrade, CONNECT). Half-close passes through: a FIN from one side is forwarded as a
/// shutdown of the other once queued bytes are written, and the other direction keeps
/// flowing. Back-pressure: a side stops being read while the other's output is above its
/// high-water mark. The tunnel borrows both streams (their owner keeps them alive) and
/// becomes their handler; it owns only its timer.
class Tunnel : private StreamHandler {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    /// The tunnel is over. Called once, from a stream or timer callback; the owner may
    /// destroy the tunnel and both streams (deferred) from inside.
    virtual void onTunnelEnd(TunnelEnd why) = 0;
  };

  Tunnel(EventLoop& loop, Stream& client, Stream& server, const TunnelTimeouts& t, Owner& owner);
  ~Tunnel() override;

  /// Starts pumping. Bytes already read but not yet forwarded go first.
  void start(Buffer to_server, Buffer to_client);

 private:
  void onStreamData(Stream& s, Buffer data) override;
  void onStreamEof(Stream& s) override;
  void onStreamError(Stream& s, int err) override;
  void onStreamDrained(Stream& s) override;
  void onStreamShutdownDone(Stream& s) override;
  void endIfFinished();
  Stream& peer(Stream& s) { return &s == &client_ ? server_ : client_; }
  void end(TunnelEnd why);
  void armTimer();
  static void onTimer(void* ctx);

  EventLoop& loop_;
  Stream& client_;
  Stream& server_;
  TunnelTimeouts t_;
  Owner& owner_;
  TimerPtr timer_;
  bool client_eof_ = false;
  bool server_eof_ = false;
  bool ended_ = false;
};

}  // namespace crescent::core
