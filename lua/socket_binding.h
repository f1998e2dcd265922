#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include "core/net/stream.h"
#include "core/net/timer.h"
#include "core/tls/tls_context.h"
#include "lua/coroutine.h"

struct lua_State;

namespace crescent::lua {

/// The idle connections of one Lua state's cosockets (sock:setkeepalive, and
/// crescent.http's keep-alive): by key ("host:port", "unix:/path", or the `pool` option),
/// each kept until its idle time passes, the peer closes or sends anything, or a
/// connect() to the same key takes it. Worker thread only.
class SocketPool final : private core::StreamHandler {
 public:
  explicit SocketPool(CoroutineHost& host);
  ~SocketPool() override;
  SocketPool(const SocketPool&) = delete;
  SocketPool& operator=(const SocketPool&) = delete;

  /// An idle connection for `key` (its handler unset, not reading), or null.
  core::StreamPtr take(const std::string& key);
  /// Keeps `s` for `key` for `idle_ms` (0: until used or closed); beyond `max` per key
  /// the oldest is closed.
  void give(const std::string& key, core::StreamPtr s, uint64_t idle_ms, size_t max);
  /// Closes every idle connection.
  void clear();
  /// Sockets open: idle here, and in use by cosockets and crescent.http (they count
  /// themselves with opened()/closed()).
  int open() const { return static_cast<int>(by_stream_.size()) + in_use_; }
  void opened() { ++in_use_; }
  void closed() { --in_use_; }

  /// The TLS client context for crescent.http's https requests: verification on
  /// (`verify`) against `ca` (a PEM file; empty: the system store), for a server whose
  /// IP is verified when the URL names an IP (`ip`, else names are verified by SNI).
  /// Made once per combination and kept. Null with `error` when it cannot be made.
  const core::tls::ClientContext* tlsContext(bool verify, const std::string& ca,
                                             const std::string& ip, std::string& error);

 private:
  struct Idle {
    SocketPool* pool;
    std::string key;
    core::StreamPtr stream;
    core::TimerPtr timer;
    static void onTimer(void* ctx);
  };
  void onStreamData(core::Stream& s, core::Buffer data) override;
  void onStreamEof(core::Stream& s) override;
  void onStreamError(core::Stream& s, int err) override;
  void drop(core::Stream& s);

  CoroutineHost& host_;
  std::unordered_map<std::string, std::deque<Idle*>> idle_;  // oldest first
  std::unordered_map<core::Stream*, std::unique_ptr<Idle>> by_stream_;
  int in_use_ = 0;
  std::unordered_map<std::string, std::unique_ptr<core::tls::ClientContext>> tls_;
};

/// Installs crescent.socket (tcp) and crescent.http (request) in the state.
void registerSockets(lua_State* L);

}  // namespace crescent::lua
