#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct lua_State;

namespace crescent::lua {

/// The allocator of one Lua state: counts its bytes and caps them
/// (`global { lua = { maxmem = "256m" } }`, HAProxy's tune.lua.maxmem).
///
/// The cap is enforced only while Lua code runs under a RunBudget (a hook, a service, a
/// pick, a timer callback, the config script: every call the core makes into Lua), that
/// is inside a protected call, where LuaJIT turns a refused allocation into the Lua error
/// "not enough memory" that unwinds to the call's pcall/resume and fails that phase. Out
/// of such a call (the core pushing a txn's arguments, closing a coroutine, the GC run by
/// lua_close) allocations always succeed, since a refusal there would reach LuaJIT's
/// panic handler and abort the process. So the state may pass the cap by what the core
/// itself pushes, a few KB, never by what a script allocates.
///
/// LuaJIT does not collect before it fails an allocation, so the cap counts garbage not
/// yet collected; after a refusal, or above 3/4 of the cap, the next guarded call starts
/// with a full collection (RunBudget).
///
/// Frees are never refused. Owned by the ScriptState; must outlive its lua_State.
/// Not thread-safe: touched only by the thread using the state.
struct LuaMemory {
  size_t used = 0;          ///< bytes the state holds (LuaJIT's own count as seen by the allocator)
  size_t limit = 0;         ///< bytes; 0 = no cap
  int enforce = 0;          ///< depth of guarded calls in progress (RunBudget); >0: cap enforced
  uint64_t limit_hits = 0;  ///< allocations refused because of the cap, since creation
  bool refused = false;     ///< a refusal since the outermost guarded call started
  /// A refusal happened: the next guarded call first runs a full collection, so that the
  /// garbage a failed call left (a half-built table) does not fail the next one too. A
  /// guarded call that starts above 3/4 of the cap collects first as well.
  bool collect = false;

  /// lua_Alloc: `ud` is the LuaMemory.
  static void* alloc(void* ud, void* ptr, size_t osize, size_t nsize);
};

/// The LuaMemory of `L`'s state (any of its threads), or nullptr when the state was made
/// with another allocator (LuaJIT builds that refuse lua_newstate: see
/// ScriptState::loadSource).
LuaMemory* luaMemoryOf(lua_State* L);

/// `msg` (an error text of a call into `L`), with the cap named when the call failed
/// because the allocator refused past the cap: "Lua memory limit reached (maxmem N MB):
/// not enough memory". Otherwise `msg` unchanged.
std::string explainMemoryError(lua_State* L, std::string msg);

}  // namespace crescent::lua
