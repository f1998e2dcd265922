#pragma once

// Active health checks (reference/004_…; HAProxy's `check`, `inter`, `fastinter`,
// `downinter`, `rise`, `fall`, `http-check`). See docs/config.md "Health checks".

#include <cstddef>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "core/backend/check_script.h"
#include "core/backend/server.h"

namespace crescent::core {

namespace tls {
class ClientContext;
}  // namespace tls

/// Checks every server whose ServerConfig::check.enabled is set, on one thread of its
/// own with its own libuv loop (core/net EventLoop), and sets Server::setUp() (atomic,
/// read by the workers) after `rise` consecutive successes / `fall` consecutive failures.
///
/// States: a checked server starts UP (as every server does) and goes DOWN after `fall`
/// consecutive failed checks; a DOWN server comes back UP after `rise` consecutive
/// successful checks. Each change is logged by Server::setUp() with HAProxy's reason text
/// and the check's duration, e.g.
///   `server b/s1 is DOWN, reason: Layer4 connection problem, info: "Connection refused",
///    check duration: 0ms. ...`
/// Other reasons: "Layer4 timeout", "Layer7 timeout", "Layer7 wrong status, code: 503,
/// info: \"Service Unavailable\"", "Layer7 invalid response, info: ...", "Layer7 response
/// content error, info: ...", "Layer7 check passed, code: 200", "Layer4 check passed".
/// A check whose result goes against the server's state (a failure while UP, a success
/// while DOWN) is logged at info level with the progress ("status: 2/3 UP").
///
/// One check:
/// - HTTP (`check.kind == kHttp`): connect, send `METHOD URI HTTP/1.1` with `Host` (the
///   configured host, else the checked address), `User-Agent: crescent-health-check` and
///   `Connection: close`; read the response head (at most kMaxHead bytes) and, when
///   `expect_body` or a Lua `expect` needs it, the first kMaxReply bytes of the body
///   (de-chunked). Passes when the status is in `expect_status` (empty: 200..399), the
///   body contains `expect_body` (if set) and the Lua `expect` returns true (if set).
/// - TCP: connect. With `send`, write it. When `expect_body` or a Lua `expect` is set,
///   read a reply: up to kMaxReply bytes, until `expect_body` is found or the peer
///   closes (without `expect_body`: the first bytes received are the reply). With only
///   `send`, the check passes once `send` is written out.
/// - Protocol (`kMysql`, `kPgsql`, `kRedis`, `kSmtp`): the exchange of
///   core/backend/check_protocol.h (HAProxy's mysql-check, pgsql-check, redis-check,
///   smtpchk); its verdict and reason are the check's. After a pass, the protocol's goodbye
///   (COM_QUIT, Terminate, QUIT) is written out before the close.
/// - Timeout: `check.timeout`, else min(`inter`, the backend's `timeout.connect`), for
///   the whole check (connect, send, reply).
/// - The connection is closed with FIN, never RST: unread input is drained with
///   recv(MSG_TRUNC) just before close (a TCP close with unread input sends RST).
///
/// Scheduling: the first check of checked server i of n in a backend starts i*inter/n ms
/// after start(); then a check starts every `inter` ms while UP with no failure counted,
/// `fastinter` while a transition is in progress (failures counted while UP, successes
/// while DOWN), `downinter` while DOWN (each 0 = `inter`). A check that took longer than
/// the interval is followed by the next at once. Servers in admin state maint are not
/// checked (their counters restart when they leave maint); drain is checked.
///
/// Agent checks (ServerConfig::agent, core/backend/agent_check.h) run on the same thread,
/// independently of the health checks. Health checks count on Server::healthUp(): what
/// the agent says does not reset their rise/fall progress.
///
/// Server::countCheckFailure() counts failed checks while the server is UP (HAProxy's
/// `chkfail`), so a server that went DOWN after `fall` failures shows `fall` of them.
///
/// Threads: the constructor, start(), stop() and the destructor are called from one
/// owner thread; everything else happens on the checker's thread.
class HealthChecker {
 public:
  /// Largest response head of an HTTP check (bytes); a longer head is an invalid response.
  static constexpr size_t kMaxHead = 16 * 1024;
  /// Largest body (HTTP) or reply (TCP) kept for `expect_body` and Lua `expect` (bytes).
  static constexpr size_t kMaxReply = 16 * 1024;

  /// The TLS context of a server whose traffic uses TLS (null: plain). Its checks then
  /// run over TLS too, as HAProxy's `check-ssl` is implied by `ssl`: the handshake
  /// comes first (after a PROXY header), a failed one is a Layer6 failure.
  using TlsOf = std::function<const tls::ClientContext*(const Server&)>;

  /// `backends` (borrowed) must outlive the checker. `script` (may be null when no check
  /// uses a Lua `expect`; such a check then fails with a reason saying so) is used on the
  /// checker thread only and destroyed there. `tls_of` is called on the owner thread
  /// (from start()); the contexts it returns must outlive the checker.
  HealthChecker(std::vector<Backend*> backends, std::unique_ptr<CheckScript> script,
                TlsOf tls_of = nullptr);
  ~HealthChecker();  ///< stop()s
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  /// True when at least one server has checks or an agent enabled (else a checker is not
  /// needed).
  static bool wanted(const std::vector<Backend*>& backends);
  /// Starts the thread and the checks. Call at most once.
  void start();
  /// Closes every check connection and timer, waits for the thread to end (its loop is
  /// closed with nothing left open; a leak is logged as an error). Idempotent; a checker
  /// that was never started just stops.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crescent::core
