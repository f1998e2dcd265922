#pragma once

// Lua objects for servers and backends (docs/lua-api.md "Servers and balancers"), and
// the `crescent` library table (crescent.hash, crescent.now_ms, crescent.server,
// crescent.backend).
//
// A server object is a userdata holding a core::Server*. There is one per server per
// Lua state (cached in the registry), so the same server is always the same object
// (usable as a table key). Servers belong to the generation whose Lua state this is and
// live as long as that state: an object can never outlive its server.

#include <lua.hpp>

#include <string>

namespace crescent::core {
class Backend;
class Generation;
class Server;
}  // namespace crescent::core

namespace crescent::lua {

inline constexpr const char* kServerMeta = "crescent.server";

/// Creates the `crescent` global (hash, now_ms; server/backend raise until a generation
/// is attached) and the server metatable. Called for every state before its script runs.
void registerCrescentLib(lua_State* L);

/// Makes crescent.server("b/s") and crescent.backend("b") find the servers of `gen`.
/// `gen` must outlive the state.
void attachGeneration(lua_State* L, core::Generation& gen);

/// Pushes the (cached) object of `server`.
void pushServer(lua_State* L, core::Server& server);

/// The server behind the value at `idx`, or null if it is not a server object.
core::Server* toServer(lua_State* L, int idx);

/// Pushes the (cached) backend table of `backend`: { name, servers = { ... } }.
void pushBackend(lua_State* L, core::Backend& backend);

}  // namespace crescent::lua
