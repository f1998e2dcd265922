#pragma once

#include <memory>

#include "core/base/status.h"
#include "core/config/config.h"

struct lua_State;

namespace crescent::lua {

/// Turns the table returned by the DSL's ctx.resolve() (stdlib/config.lua) at stack index
/// `idx` into a core::Config: parses every bind and server address (core::Address) and
/// compiles every ACL (core::Acl::compile). Names, modes and types were checked in Lua.
/// Errors are `file:line: <object>: message`. Leaves the stack as it found it.
/// Config::path and Config::script are left empty for the caller.
core::Result<std::shared_ptr<core::Config>> buildConfigFromLua(lua_State* L, int idx);

/// Converts the ACL descriptor at stack index `idx` (an `acl.*` value) to a
/// core::AclNode, as buildConfigFromLua does before compiling it. Exposed for tests.
core::Result<core::AclNode> aclNodeFromLua(lua_State* L, int idx);

}  // namespace crescent::lua
