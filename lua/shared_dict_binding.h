#pragma once

// `crescent.shared(name)`: process-wide shared dictionaries for Lua (docs/lua-api.md
// "Shared dictionaries"), after OpenResty's ngx.shared.DICT, over core::SharedDict.
//
// A dictionary object is a userdata holding a std::shared_ptr<core::SharedDict> (released
// by __gc). The dictionaries themselves live in the process (core::SharedDicts), outside
// config generations: every worker's Lua state, and the states of the next generation
// after a reload, find the same data under the same name.
//
// Data-dependent failures return `nil, err` ("exists", "not found", "not a number",
// "no memory", "empty key", "key too long", "value too large"); misuse (a key that is not
// a string, a table as value, a negative ttl, a method called with `.`) raises an error
// naming the function and the caller's line.

#include <lua.hpp>

namespace crescent::lua {

inline constexpr const char* kSharedDictMeta = "crescent.shared_dict";

/// Pushes the `crescent.shared` function (and creates the dictionary metatable in this
/// state). For registerCrescentLib: `pushSharedDictFunction(L); lua_setfield(L, -2,
/// "shared");`.
void pushSharedDictFunction(lua_State* L);

}  // namespace crescent::lua
