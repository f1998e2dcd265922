#pragma once

#include <cstdint>

#include "core/net/stream.h"
#include "core/net/timer.h"
#include "core/proto/proxy_protocol.h"
#include "core/session/generation.h"
#include "core/tls/tls_info.h"

namespace crescent::core {

/// Why no server connection could be made, for the status and the termination state.
enum class ConnectFailure {
  kNoServer,  ///< no usable server (all weight 0, full, or none): 503, "SC"
  kError,     ///< refused/unreachable after every retry: 503, "SC" (as HAProxy)
  kTimeout,   ///< `timeout connect` after every retry: 503, "sC" (as HAProxy)
};

/// The TLVs of the PROXY v2 header sent to a server (haproxy's doc/proxy-protocol.txt
/// §2.2), for `options` (bits of kProxyV2Ssl, kProxyV2Authority, kProxyV2Alpn,
/// kProxyV2UniqueId, kProxyV2Crc32c). Each asked-for TLV comes from `received` (the PROXY
/// header the client connection began with) when it carries one, else from `tls` (the
/// TLS session crescent terminated for the client), else it is left out:
///  - PP2_TYPE_SSL (§2.2.6; §2.2.5 in versions of the spec before PP2_TYPE_UNIQUE_ID): a
///    received one whose <client> has PP2_CLIENT_SSL (an earlier hop terminated the
///    client's TLS) passes on: that bit, version and cipher. Else, from `tls`: <client> =
///    PP2_CLIENT_SSL, <verify> = 0 (binds request no client certificate; HAProxy sends 0
///    too), sub-TLVs PP2_SUBTYPE_SSL_VERSION ("TLSv1.3") and PP2_SUBTYPE_SSL_CIPHER.
///  - PP2_TYPE_AUTHORITY (§2.2.2): the received one, else the SNI the client sent.
///  - PP2_TYPE_ALPN (§2.2.1): the received one, else the protocol ALPN agreed.
///  - PP2_TYPE_UNIQUE_ID: the received one only (the caller makes one when none).
/// `received` and `tls` may be null; nothing is kept.
proxy::V2Options proxyV2Options(unsigned options, const proxy::Header* received,
                                const tls::Info* tls);

/// Connects to a server whose slot is held, with `timeout connect` per attempt, `retries`
/// further attempts, and `redispatch` (the last attempt goes to another server with a
/// free slot, chosen by the backend's algorithm). A retry of the same server waits
/// min(`timeout connect`, 1 s) first, as HAProxy does; a redispatch does not wait. Holds the
/// server's slot until the connection is handed over: then the owner holds it and releases it.
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
  /// The client side, for servers with `send_proxy`: its addresses, the PROXY header it
  /// came with and the TLS session crescent terminated for it (the v2 TLVs come from
  /// these two, see proxyV2Options), all borrowed from the owner for the connector's
  /// life; `received` and `tls` may be null.
  void setOrigin(const Address* src, const Address* dst, const proxy::Header* received,
                 const tls::Info* tls = nullptr) {
    origin_src_ = src;
    origin_dst_ = dst;
    origin_proxy_ = received;
    origin_tls_ = tls;
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
  bool connected_now_ = false;    // an abstract UNIX connect succeeded synchronously
  Server* turnaround_ = nullptr;  // the server to try again when the pause ends
  const Address* origin_src_ = nullptr;
  const Address* origin_dst_ = nullptr;
  const proxy::Header* origin_proxy_ = nullptr;
  const tls::Info* origin_tls_ = nullptr;
  uint64_t started_at_ = 0;
};

}  // namespace crescent::core
