#pragma once

// Small helpers shared by the lua/ bindings: the one trampoline every lua_CFunction goes
// through (STYLE rule 3), error-message handlers for lua_pcall, and typed readers of
// table fields for the config builder.

#include <lua.hpp>

#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "core/base/bytes.h"

namespace crescent::lua {

/// A binding body returns this (after pushing a message string) to have the trampoline
/// raise it as a Lua error once every C++ object of the body has been destroyed.
/// Not -1: that is what lua_yield() returns, which a yielding body passes through.
inline constexpr int kRaise = -2;

/// Wraps a binding body so that no C++ exception ever crosses into Lua: a
/// std::exception becomes a Lua error with its what(). Lua errors raised inside the body
/// (luaL_check*, lua_error) pass through untouched: LuaJIT unwinds them as foreign
/// exceptions, which `catch (const std::exception&)` does not match.
template <int (*F)(lua_State*)>
int guarded(lua_State* L) {
  char what[256];
  bool failed = false;
  int n = 0;
  try {
    n = F(L);
  } catch (const std::exception& e) {
    std::strncpy(what, e.what(), sizeof(what) - 1);
    what[sizeof(what) - 1] = '\0';
    failed = true;
  }
  if (failed) {
    lua_settop(L, 0);
    lua_pushstring(L, what);
    return lua_error(L);
  }
  if (n == kRaise) return lua_error(L);
  return n;
}

/// Pushes a function with upvalues through the trampoline.
template <int (*F)(lua_State*)>
void pushGuarded(lua_State* L, int upvalues = 0) {
  lua_pushcclosure(L, &guarded<F>, upvalues);
}

/// lua_absindex (Lua 5.2) for LuaJIT: a relative stack index made absolute.
inline int absIndex(lua_State* L, int idx) {
  return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

/// lua_pcall message handlers. Both turn a non-string error into text and rewrite a
/// location shortened by LuaJIT ("...long/path/cfg.lua:3:") back to the full path
/// registered with setScriptPath(). messageHandler keeps the message only;
/// tracebackHandler appends "\nstack traceback:\n..." (luaL_traceback).
int messageHandler(lua_State* L);
int tracebackHandler(lua_State* L);

/// Records the main script's path in the registry for the handlers above.
void setScriptPath(lua_State* L, const std::string& path);
/// The path given to setScriptPath() ("" when none).
std::string scriptPath(lua_State* L);

/// Rewrites a LuaJIT-shortened chunk name at the start of `msg` to `path`.
std::string fixLocation(std::string msg, const std::string& path);

/// The value at `idx` as a string, whatever its type (tostring semantics for
/// strings/numbers, "__tostring" when defined, else "(error object is a T value)").
std::string describeError(lua_State* L, int idx);

/// The start of an `__index` metamethod whose first upvalue is a methods table: when
/// key (stack index 2) names a method, pushes it and returns true (the metamethod
/// returns 1). Otherwise returns false and sets `key` to the key, or to an empty view
/// when the key is not a string (the metamethod then returns 0 for unknown keys).
bool indexMethodOrKey(lua_State* L, std::string_view& key);

/// Pushes the metatable registered as `tname` (luaL_newmetatable), found by the address
/// of `tname` in the registry after the first lookup: no string hashing on the paths
/// that run for every request. `tname` must be a string with static storage; two copies
/// of one name (one per translation unit) are two cache keys for the same table.
void pushMetatable(lua_State* L, const char* tname);

/// luaL_testudata with pushMetatable's lookup: the userdata at `idx` when its metatable
/// is `tname`'s, else nullptr. Leaves the stack as it was.
void* testUdata(lua_State* L, int idx, const char* tname);

// Typed field readers for the table at `idx` (absolute or relative). A missing or
// nil field gives std::nullopt; a field of another type too (the DSL has checked types).
std::optional<std::string> stringField(lua_State* L, int idx, const char* key);
std::optional<int64_t> intField(lua_State* L, int idx, const char* key);
std::optional<bool> boolField(lua_State* L, int idx, const char* key);

/// Pushes a message formatted like lua_pushfstring and returns kRaise, for a binding
/// body to `return raiseFormat(L, ...)` (the trampoline raises it).
int raiseFormat(lua_State* L, const char* fmt, ...);

/// The string argument at `idx` as a view (valid while the value stays on the stack);
/// a type error (luaL_checklstring) when it is not a string.
std::string_view checkView(lua_State* L, int idx);

/// The string (or number) at `idx` as a body to send: a copy when it is short, otherwise
/// the Lua string itself, pinned in the registry until the last holder of the result lets
/// go: no copy of a many-megabyte txn:reply body (issue 17 part 7). The holder must let
/// go on this thread while the state is open: whoever keeps the result past the call
/// adds what owns the state with Bytes::keepAlso. Raises (memory) like luaL_ref.
core::Bytes bodyBytes(lua_State* L, int idx);

/// Records L as the state's main thread (registry[kMainThreadKey]): what bodyBytes'
/// pins unpin on, since the coroutine that pinned may be gone by then.
void setMainThread(lua_State* L);

/// Pushes the table registry[key], creating it on first use.
void pushRegistryTable(lua_State* L, const char* key);

/// Registry keys (lua_setfield(L, LUA_REGISTRYINDEX, ...)).
inline constexpr const char* kHooksKey = "crescent.hooks";
inline constexpr const char* kConfigCtxKey = "crescent.config_ctx";
inline constexpr const char* kScriptPathKey = "crescent.script_path";
inline constexpr const char* kMainThreadKey = "crescent.main_thread";

}  // namespace crescent::lua
