#pragma once

// The interfaces through which the core calls user scripts (DESIGN §1: core/ never
// includes a Lua header; lua/ implements these).

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/backend/check_script.h"
#include "core/backend/server.h"
#include "core/config/config.h"
#include "core/net/address.h"
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

/// What the request being processed looks like to a hook. Borrowed for the call only.
struct RequestContext {
  HttpHead& req;       ///< editable: header changes are forwarded to the server (TCP mode: empty)
  const Address& src;  ///< client address (after PROXY protocol, when used)
  const Address& dst;  ///< address the client connected to
  std::string_view frontend;
  bool http = true;                      ///< false in TCP mode: `txn.req` is nil
  const proxy::Header* proxy = nullptr;  ///< the PROXY header received, or null
  const tls::Info* tls = nullptr;        ///< TLS terminated on the bind (txn.tls), or null
};

/// What an http_request hook decided.
struct HookDecision {
  enum class Kind {
    kContinue,    ///< go on: use_backend rules, then default_backend
    kReply,       ///< answer with status/headers/body, do not contact a server
    kUseBackend,  ///< route to `backend` (by name), skipping use_backend rules
    kFail,        ///< the hook raised or overran: answer 500, log `error`
  };
  Kind kind = Kind::kContinue;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string backend;
  std::string error;  ///< for kFail: message with the Lua traceback
};

/// The response a Lua service produced.
struct ServiceResponse {
  bool ok = true;  ///< false: the service raised or overran; answer 500, log `error`
  int status = 200;
  std::string reason;  ///< empty: the standard reason phrase
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string error;
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

  /// Runs the frontend's `http_request = function(txn)` hook with id `hook_id` (> 0).
  virtual HookDecision runHttpRequest(int hook_id, RequestContext& ctx) = 0;

  /// Runs the backend's `service = function(applet)` with id `service_id` (> 0) on a
  /// request whose whole body is `body`.
  virtual ServiceResponse runService(int service_id, RequestContext& ctx,
                                     std::string_view body) = 0;

  /// Runs the Lua balancer `lb` of `backend`: pick(txn, servers, state), where servers
  /// are `candidates` (usable, not full, in config order) and state is what the
  /// balancer's init(backend) returned in this state (called once per backend, lazily).
  /// Returns the chosen server, or null to fall back to the built-in algorithm: when
  /// pick returned nil, raised (`error` gets the message and traceback), overran its
  /// budget, or returned something that is not one of `candidates` (`error` says so).
  virtual Server* runBalancerPick(const LuaBalancerConfig& lb, Backend& backend,
                                  RequestContext& ctx, const std::vector<Server*>& candidates,
                                  std::string& error) = 0;

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
