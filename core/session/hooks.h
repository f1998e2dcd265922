#pragma once

// The interfaces through which the core calls user scripts (DESIGN §1: core/ never
// includes a Lua header; lua/ implements these).

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/backend/check_script.h"
#include "core/backend/server.h"
#include "core/base/bytes.h"
#include "core/config/config.h"
#include "core/net/address.h"
#include "core/net/event_loop.h"
#include "core/proto/http_head.h"
#include "core/proto/proxy_protocol.h"
#include "core/tls/tls_info.h"

namespace crescent::core {

class Generation;

/// The two generations of a reload, as `on_reload(prev, next)` hooks see them.
struct ReloadInfo {
  uint64_t prev_id = 0;
  const Config* prev = nullptr;  ///< the running configuration
  uint64_t next_id = 0;
  const Config* next = nullptr;  ///< the configuration being loaded (the hook's own)
};

/// What the exchange (or TCP session) being processed looks like to its hooks. Owned by
/// the exchange, which outlives its ScriptTxn; the fields it points to live as long.
struct RequestContext {
  HttpHead& req;       ///< editable in http_request: changes reach the server (TCP mode: empty)
  const Address& src;  ///< client address (after PROXY protocol, when used)
  const Address& dst;  ///< address the client connected to
  std::string_view frontend;
  bool http = true;                      ///< false in TCP mode: `txn.req` is nil
  const proxy::Header* proxy = nullptr;  ///< the PROXY header received, or null
  const tls::Info* tls = nullptr;        ///< TLS terminated on the bind (txn.tls), or null
  /// The response head once there is one (http_response: editable; log: read-only), or
  /// null before it.
  HttpHead* resp = nullptr;
};

/// What an http_request or http_response hook decided.
struct HookDecision {
  enum class Kind {
    kContinue,    ///< go on: use_backend rules, then default_backend (http_response: send it)
    kReply,       ///< answer with status/headers/body, do not contact a server / replace it
    kUseBackend,  ///< route to `backend` (by name), skipping use_backend rules
    kFail,        ///< the hook raised or overran: answer 500, log `error`
  };
  Kind kind = Kind::kContinue;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  Bytes body;  ///< kReply: may borrow the hook's Lua string (held until it is sent)
  /// kReply from txn:deny: a configured error page for `status` (errorfiles, error_page)
  /// replaces status/headers/body when there is one.
  bool error_page = false;
  std::string backend;
  std::string error;  ///< for kFail: message with the Lua traceback
};

/// The response a Lua service produced.
struct ServiceResponse {
  bool ok = true;  ///< false: the service raised or overran; answer 500, log `error`
  int status = 200;
  std::string reason;  ///< empty: the standard reason phrase
  std::vector<std::pair<std::string, std::string>> headers;
  Bytes body;  ///< may borrow a Lua string (one applet:send of a large body)
  std::string error;
};

/// A Lua balancer's choice.
struct PickResult {
  Server* server = nullptr;  ///< one of the candidates; null: fall back to the algorithm
  std::string error;         ///< why the choice was refused or failed; empty when it did not
};

/// What the log phase sees of a finished exchange (HTTP) or session (TCP): HAProxy's
/// httplog/tcplog fields. Times in ms, -1 when the step was not reached.
struct LogInfo {
  bool http = true;
  std::string_view line;         ///< the line crescent would write (without newline)
  std::string_view backend;      ///< backend name, or the frontend's when none was chosen
  std::string_view server;       ///< server name, "<NOSRV>" or "<service>"
  int64_t tq = -1;               ///< HTTP: request head received (Tq / TR)
  int64_t tw = -1;               ///< time in queues
  int64_t tc = -1;               ///< connect
  int64_t tr = -1;               ///< HTTP: server response head
  int64_t ta = 0;                ///< whole exchange / session (Ta, Tt)
  int status = -1;               ///< HTTP status sent, -1 when none
  uint64_t bytes_out = 0;        ///< bytes sent to the client
  uint64_t bytes_in = 0;         ///< bytes received from the client
  std::string_view termination;  ///< HAProxy's two termination flags ("--", "SC", "cD"...)
  int retries = 0;
};

/// What a log hook returned: nothing (the default line), a line of its own, or no line.
struct LogDecision {
  enum class Kind { kDefault, kReplace, kSuppress };
  Kind kind = Kind::kDefault;
  std::string line;   ///< for kReplace
  std::string error;  ///< the hook raised: logged, and the default line is written
};

/// What an `error_page = function(status, txn)` hook returned: a page ({ status, headers,
/// body }, positional or named), or nothing (nil: the next level's page, then crescent's).
struct ErrorPageResult {
  bool page = false;   ///< false: no page from this hook (nil, or `error` set)
  int status = 0;      ///< the status to send (the hook may change it)
  std::string reason;  ///< "" : the standard phrase
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string error;  ///< the hook raised, waited or returned something else: logged
};

/// The caller's side of ConnectionPeek::notifyMore().
class PeekWaiter {
 public:
  /// More bytes arrived, or the connection ended. Called once per notifyMore().
  virtual void onPeekMore() = 0;

 protected:
  ~PeekWaiter() = default;
};

/// What a tcp_request hook sees of a connection before any protocol runs on it: the bytes
/// received so far, which stay for the protocol (TLS, HTTP, the TCP tunnel) that follows.
class ConnectionPeek {
 public:
  virtual ~ConnectionPeek() = default;
  /// The bytes received so far (at most one buffer's worth), not consumed.
  virtual std::string_view received() const = 0;
  /// The client closed or failed: no more bytes will come.
  virtual bool ended() const = 0;
  /// Tells `w` once when more bytes arrive or the connection ends; null cancels.
  virtual void notifyMore(PeekWaiter* w) = 0;
  /// The frontend's `inspect_delay` (ms): how long conn.sni, conn.alpn and conn:peek()
  /// wait by default.
  virtual uint64_t inspectDelayMs() const = 0;
};

/// What a tcp_request hook decided.
struct ConnDecision {
  enum class Kind {
    kContinue,    ///< go on: the frontend's rules choose the backend
    kReject,      ///< close the connection now
    kUseBackend,  ///< TCP mode: route to `backend`
    kFail,        ///< the hook raised or overran: the connection is closed, `error` logged
  };
  Kind kind = Kind::kContinue;
  std::string backend;
  std::string error;
};

/// Result of starting a script phase.
enum class ScriptStatus {
  kDone,     ///< finished within the call: the out-parameter holds the result
  kPending,  ///< the script waits (a sleep, a socket...): ScriptWaiter::onScriptDone() follows
};

/// The caller's side of a phase that may wait.
class ScriptWaiter {
 public:
  virtual ~ScriptWaiter() = default;
  /// A phase that returned kPending finished; its result is in the out-parameter given to
  /// the call. Runs from a loop callback, never from inside the call that started the
  /// phase. The waiter may destroy the ScriptTxn from inside.
  virtual void onScriptDone() = 0;
};

/// The Lua side of one exchange (HTTP) or session (TCP): the `txn` object and its
/// `txn.ctx` table, alive from the first phase to the log phase (docs/lua-api.md, "Phases").
/// Each phase runs the hook in a coroutine: a hook that waits (crescent.sleep, a socket)
/// returns kPending and its waiter hears when it is done. At most one phase runs at a
/// time (starting another while one waits is a programming error). Destroying the
/// ScriptTxn cancels a phase that waits (its coroutine is dropped, its sockets and timers
/// closed, nothing is reported) and turns the Lua txn into a dead handle. Worker thread
/// only; must not outlive the ScriptRunner that made it.
class ScriptTxn {
 public:
  virtual ~ScriptTxn() = default;

  /// The frontend's `http_request = function(txn)` hook, id `hook_id` (> 0).
  virtual ScriptStatus httpRequest(int hook_id, HookDecision& out, ScriptWaiter& w) = 0;
  /// The `http_response = function(txn)` hook: RequestContext::resp is set (editable);
  /// kReply replaces the response.
  virtual ScriptStatus httpResponse(int hook_id, HookDecision& out, ScriptWaiter& w) = 0;
  /// The backend's `service = function(applet)` on a request whose whole body is `body`
  /// (borrowed until the phase ends).
  virtual ScriptStatus service(int service_id, std::string_view body, ServiceResponse& out,
                               ScriptWaiter& w) = 0;
  /// The Lua balancer `lb` of `backend`: pick(txn, servers, state), where servers are
  /// `candidates` (usable, not full, in config order; borrowed until the phase ends) and
  /// state is what the balancer's init(backend) returned in this state (called once per
  /// backend, lazily). out.server is null (fall back to the built-in algorithm) when pick
  /// returned nil, raised or overran (out.error says so), or returned something that is
  /// not one of `candidates`.
  virtual ScriptStatus balancerPick(const LuaBalancerConfig& lb, Backend& backend,
                                    const std::vector<Server*>& candidates, PickResult& out,
                                    ScriptWaiter& w) = 0;
  /// The frontend's `tcp_request = function(conn)` hook, once per connection before any
  /// protocol: `peek` (borrowed until the phase ends) shows the bytes received.
  virtual ScriptStatus tcpRequest(int hook_id, ConnectionPeek& peek, ConnDecision& out,
                                  ScriptWaiter& w) = 0;
  /// From now on the txn's facts are `ctx` (a connection's txn handed from its
  /// inspection to its TCP session). No phase may be in progress.
  virtual void rebind(RequestContext& ctx) = 0;
  /// The `log = function(txn, info)` hook. Never waits: an attempt to is an error.
  virtual void log(int hook_id, const LogInfo& info, LogDecision& out) = 0;
  /// The `error_page = function(status, txn)` hook for a response crescent makes itself
  /// with `status`. Never waits: an attempt to is an error. `with_txn` false: the
  /// function gets nil for txn (the request could not be read: 400, 408, 413 on a head).
  virtual void errorPage(int hook_id, int status, bool with_txn, ErrorPageResult& out) = 0;
  /// Cancels the phase that waits, if any: its coroutine is dropped, its sockets and
  /// timers closed, and its waiter is not called. The txn stays usable.
  virtual void cancel() = 0;
};

/// What one Lua state holds and did, for `show info` (per worker, summed over generations).
struct ScriptStats {
  int coroutines = 0;              ///< phases and timer callbacks started and not ended
  int waiting = 0;                 ///< of those, waiting (sleep, socket, lookup)
  int timers = 0;                  ///< timers pending (crescent.timer.at / every)
  int sockets = 0;                 ///< cosockets open, idle pooled ones included
  uint64_t memory_bytes = 0;       ///< the state's memory (collectgarbage("count"))
  uint64_t run_us = 0;             ///< Lua running time in phases and timer callbacks
  uint64_t memory_limit = 0;       ///< bytes, global.lua.maxmem in force (0: none)
  uint64_t memory_limit_hits = 0;  ///< allocations refused at the cap since the state began
};

/// Runs the user's Lua functions of one generation on one worker thread.
/// Not thread-safe: each worker has its own runner (and Lua state) per generation.
/// Calls do not re-enter the core and never throw; a script error is reported in the
/// result, never raised. A hook that runs longer than its budget is cut off (kFail).
class ScriptRunner : public CheckScript {
 public:
  ~ScriptRunner() override = default;

  /// The generation whose servers the scripts see (crescent.server(), balancers). Called
  /// once by WorkerGeneration before any other call; `gen` outlives the runner.
  virtual void attach(Generation& gen) = 0;

  /// A new ScriptTxn for one exchange or session whose facts are `ctx` (borrowed: it
  /// must outlive the ScriptTxn).
  virtual std::unique_ptr<ScriptTxn> newTxn(RequestContext& ctx) = 0;

  /// The worker installs this generation: from now on the runner lives on `loop`'s
  /// thread, and its hooks may wait; timers the script asked for start. Once.
  virtual void bindLoop(EventLoop& loop) { (void)loop; }
  /// The worker stops using this generation for new work (a reload installed a newer
  /// one, or the worker stops): pending timers run once with `premature = true` and no
  /// new timer starts. `stopping`: the worker stops, so whatever still waits afterwards
  /// is cancelled now. Loop thread.
  virtual void retire(bool stopping) { (void)stopping; }
  virtual ScriptStats stats() const { return {}; }

  /// Runs the Lua balancer's on_release(server, result, state) at the end of the
  /// exchange (HTTP) or session (TCP) that `server` served; result = { time = ms from
  /// connect start to response head (or session end in TCP mode), status = HTTP status
  /// or 0, error = true when it failed }. Errors are logged, never raised.
  virtual void runBalancerRelease(const LuaBalancerConfig& lb, Backend& backend, Server& server,
                                  uint64_t time_ms, int status, bool failed) = 0;

  /// Runs the config's `on_reload(function(prev, next))` hooks (Config::reload_hooks, in
  /// order) in this state, the new generation's, attached to it. A hook that raises
  /// vetoes the reload: the error is its message (`file:line: message`). The default
  /// (no Lua) accepts.
  virtual Status runReloadHooks(const ReloadInfo& info) {
    (void)info;
    return Status();
  }
};

}  // namespace crescent::core
