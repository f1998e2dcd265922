#pragma once

// Pieces of lua/config_builder.cc's reading of the sealed config table that live in
// files of their own (health checks: config_builder_checks.cc). Internal to lua/.

#include <lua.hpp>

#include <string>

#include "core/base/status.h"
#include "core/config/config.h"

namespace crescent::lua {

/// Where an object was declared, for error prefixes: "file:line: label: ".
struct Loc {
  std::string file;
  int line = 0;
  std::string label;

  std::string prefix(int at_line = 0) const {
    return file + ":" + std::to_string(at_line > 0 ? at_line : line) + ": " + label + ": ";
  }
};

/// The server's `check` at `idx` (already merged with its backend's by stdlib/config.lua)
/// into `c`; a contradiction (type with http/send/expect, user on the wrong type) is an
/// error prefixed by `at`.
core::Status readCheck(lua_State* L, int idx, const Loc& at, core::HealthCheckConfig& c);
/// The server's `agent` at `idx` into `a` (HAProxy's agent-check); errors prefixed by `at`.
core::Status readAgent(lua_State* L, int idx, const Loc& at, const core::ServerConfig& s,
                       core::AgentCheckConfig& a);

}  // namespace crescent::lua
