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

/// The call in progress on one runner. Owned by the HookRunner (stable address).
struct ActiveCall {
  uint64_t serial = 0;  ///< incremented for every call
  bool active = false;
  core::RequestContext* ctx = nullptr;
  core::HookDecision* decision = nullptr;  ///< http_request calls
  ServiceCall* service = nullptr;          ///< service calls
};

/// The userdata behind txn, txn.req and applet.
struct Handle {
  ActiveCall* call;
  uint64_t serial;
};

/// Metatable names (luaL_newmetatable).
inline constexpr const char* kTxnMeta = "crescent.txn";
inline constexpr const char* kReqMeta = "crescent.txn.req";
inline constexpr const char* kAppletMeta = "crescent.applet";

/// The call behind the handle at `idx`, or a Lua error ("<what> used outside its <when>")
/// when that call is over. Raises a type error when `idx` is not a `tname` userdata.
ActiveCall& checkCall(lua_State* L, int idx, const char* tname, const char* what, const char* when);

/// Creates a handle userdata for `call` with metatable `tname` and pushes it.
void pushHandle(lua_State* L, ActiveCall& call, const char* tname);

/// Creates metatable `tname` (once per state) for handles shown as `shown` by
/// tostring(): __index is `index` with a table of `methods` as upvalue 1, __newindex is
/// `newindex`, and the metatable is hidden from getmetatable().
void newHandleMeta(lua_State* L, const char* tname, const char* shown, const luaL_Reg* methods,
                   lua_CFunction index, lua_CFunction newindex);

/// Registers the metatables of txn/txn.req (txn_binding.cc) and applet
/// (applet_binding.cc) in this state. Idempotent.
void registerTxn(lua_State* L);
void registerApplet(lua_State* L);

/// Pushes a new txn (with its txn.req) / applet handle for the call in progress.
void pushTxn(lua_State* L, ActiveCall& call);
void pushApplet(lua_State* L, ActiveCall& call);

}  // namespace crescent::lua
