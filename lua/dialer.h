#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "core/net/address.h"
#include "core/net/stream.h"
#include "core/net/timer.h"
#include "lua/coroutine.h"

namespace crescent::lua {

/// Where a script connects: "host" + port (a name, an IPv4 or an [IPv6] literal), or a
/// UNIX socket path ("unix:/path"). Parsed from a cosocket's connect() arguments or a URL.
struct DialTarget {
  std::string host;  ///< name or IP text (without brackets); empty for UNIX
  int port = 0;
  std::string unix_path;
  /// The keepalive pool key: the `pool` option, else "host:port" / "unix:/path".
  std::string key;
};

/// Opens a connection for a script: an idle one from the state's SocketPool when one is
/// there for the target's key (reused), else a name lookup (libuv's getaddrinfo, unless
/// the host is an IP literal) and a connect, all within `timeout_ms`. Reports once,
/// through the callback, never from inside start(). Destroying the dialer cancels it
/// (nothing is reported, nothing is left open). Worker thread only.
class Dialer final : private core::StreamHandler {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    /// `stream` (handler unset) when connected, else null and `error` ("timeout",
    /// "connection refused", "no address for x: ..."). The owner may destroy the dialer.
    virtual void onDialed(core::StreamPtr stream, bool reused, const std::string& error) = 0;
  };

  Dialer(CoroutineHost& host, Owner& owner);
  ~Dialer() override;
  Dialer(const Dialer&) = delete;
  Dialer& operator=(const Dialer&) = delete;

  void start(const DialTarget& target, uint64_t timeout_ms);

 private:
  struct Lookup;
  void startSteps(const DialTarget& target, uint64_t timeout_ms);
  void connectTo(const core::Address& a);
  void finish(core::StreamPtr s, bool reused, std::string error);
  void onStreamData(core::Stream&, core::Buffer) override {}
  void onStreamEof(core::Stream&) override {}
  void onStreamError(core::Stream& s, int err) override;
  void onStreamConnected(core::Stream& s, int status) override;
  static void onTimer(void* ctx);
  static void onNextTurn(void* ctx);

  CoroutineHost& host_;
  Owner& owner_;
  DialTarget target_;
  core::TimerPtr timer_;
  core::TimerPtr soon_;  // reports a result known at once on the next loop turn
  core::StreamPtr stream_;
  Lookup* lookup_ = nullptr;  // freed by its callback
  core::StreamPtr ready_;     // the result waiting for soon_
  bool ready_reused_ = false;
  std::string ready_error_;
  bool done_ = false;
  bool in_start_ = false;
};

}  // namespace crescent::lua
