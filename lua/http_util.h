#pragma once

// HTTP helpers shared by the txn and applet bindings.

#include <lua.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/proto/http_head.h"

namespace crescent::lua {

/// A header name a script may set: an RFC 9110 token (1+ of !#$%&'*+-.^_`|~ and
/// alphanumerics).
bool isHeaderName(std::string_view s);

/// A header value or reason phrase a script may set: no CR, LF or NUL (no injection of
/// extra header lines).
bool isHeaderValue(std::string_view s);

/// Standard reason phrase ("Not Found"), or "Unknown" for a code without one.
std::string_view reasonPhrase(int status);

/// ASCII lowercase copy.
std::string lowercase(std::string_view s);

/// Pushes { lowercase name = { value, ... } } with values in arrival order.
void pushHeaderTable(lua_State* L, const core::HttpHead& head);

/// Reads the table at `idx`, { name = value | { value, ... } } (values strings or numbers),
/// into `out`, sorted by name (values of one name in list order). Never raises: false with
/// `error` ("invalid header name \"a b\"") when a name is not a token or a value could
/// inject a line; `out` then holds what was read before.
bool readHeaderTable(lua_State* L, int idx, std::vector<std::pair<std::string, std::string>>& out,
                     std::string& error);

/// Pushes "1.1" / "1.0".
void pushVersion(lua_State* L, const core::HttpHead& head);

}  // namespace crescent::lua
