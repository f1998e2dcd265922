#pragma once

// What the txn and applet bindings see of the call in progress (lua/hook_runner.cc).
//
// A Lua handle (txn, txn.req, applet) is a full userdata holding a Handle: a pointer to
// the runner's ActiveCall and the serial of the call it was made for. The C++ objects it
// reaches (RequestContext, HookDecision, ServiceResponse) live on the runner's stack for
// the duration of one call only; a handle kept by the script past its call finds
// `active == false` or another serial and raises "txn used outside its hook" instead of
// touching freed memory.

#include <lua.hpp>

#include <cstdint>
#include <string_view>

#include "core/session/hooks.h"

namespace crescent::lua {

/// The service-specific part of a call.
struct ServiceCall {
  core::ServiceResponse* response = nullptr;
  std::string_view body;  ///< the whole request body (borrowed for the call)
  size_t read = 0;        ///< bytes of body already returned by applet:receive()
  bool started = false;   ///< start_response() (or send()) was called
};

/// The phase a call runs in (docs/lua-api.md, "Phases"): what its txn may do.
enum class Phase { kConnection, kRequest, kResponse, kBalancer, kService, kLog, kErrorPage };

/// What the Lua side of one exchange (or TCP session) shows its hooks: the state behind
/// `txn` and its handles. It lives inside the txn userdata (so a handle kept past the
/// exchange never reaches freed memory); ScriptTxn fills it for each phase.
struct ActiveCall {
  uint64_t serial = 0;  ///< incremented for every phase (applet handles check it)
  bool active = false;  ///< the exchange is alive
  Phase phase = Phase::kRequest;
  core::RequestContext* ctx = nullptr;
  core::HookDecision* decision = nullptr;  ///< http_request / http_response phases
  ServiceCall* service = nullptr;          ///< the service phase
  core::ConnectionPeek* peek = nullptr;    ///< the tcp_request phase
  core::ConnDecision* conn_decision = nullptr;
};

/// The userdata behind txn, txn.req, txn.resp and applet. `serial` 0: valid while the
/// exchange is; otherwise only during that phase (applet).
struct Handle {
  ActiveCall* call;
  uint64_t serial;
};

/// Metatable names (luaL_newmetatable).
inline constexpr const char* kTxnMeta = "crescent.txn";
inline constexpr const char* kReqMeta = "crescent.txn.req";
inline constexpr const char* kRespMeta = "crescent.txn.resp";
inline constexpr const char* kAppletMeta = "crescent.applet";
inline constexpr const char* kConnMeta = "crescent.conn";

/// The call behind the handle at `idx`, or a Lua error ("<what> used outside its <when>")
/// when that exchange (or, for a phase handle, that phase) is over. Raises a type error when `idx`
/// is not a `tname` userdata.
ActiveCall& checkCall(lua_State* L, int idx, const char* tname, const char* what, const char* when);

/// Creates a handle userdata for `call` with metatable `tname` and pushes it: valid while
/// the exchange is, or with `phase_only` during the phase in progress only.
void pushHandle(lua_State* L, ActiveCall& call, const char* tname, bool phase_only = false);

/// Creates metatable `tname` (once per state) for handles shown as `shown` by
/// tostring(): __index is `index` with a table of `methods` as upvalue 1, __newindex is
/// `newindex`, and the metatable is hidden from getmetatable().
void newHandleMeta(lua_State* L, const char* tname, const char* shown, const luaL_Reg* methods,
                   lua_CFunction index, lua_CFunction newindex);

/// Registers the metatables of txn/txn.req (txn_binding.cc) and applet
/// (applet_binding.cc) in this state. Idempotent.
void registerTxn(lua_State* L);
/// txn.req / txn.resp (head_binding.cc); registerTxn() calls it.
void registerHeads(lua_State* L);
void registerApplet(lua_State* L);

/// Pushes a new txn userdata (its ActiveCall inside, active) and returns that call.
ActiveCall& pushNewTxn(lua_State* L);
/// Pushes an applet handle for the service phase in progress on `call`.
void pushApplet(lua_State* L, ActiveCall& call);
/// Pushes the `conn` object of the tcp_request phase for the txn at `txn_idx` of L:
/// it shares the txn's state and its ctx table (conn_binding.cc).
void pushConn(lua_State* L, int txn_idx);

/// For txn and conn: pushes the connection fact `key` names (src, dst, src_port, dst_port,
/// frontend) and returns true; false (nothing pushed) for another key.
bool pushOriginField(lua_State* L, std::string_view key, const core::RequestContext& ctx);
void registerConn(lua_State* L);
/// The txn's own environment table (txn at `txn_idx`), made on first use.
void pushTxnEnv(lua_State* L, int txn_idx);

}  // namespace crescent::lua
