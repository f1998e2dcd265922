#pragma once

#include <memory>
#include <string>

#include "core/base/status.h"
#include "core/config/config.h"

struct lua_State;

namespace crescent::lua {

/// A sandboxed LuaJIT state that has evaluated one generation's config script.
///
/// The state has the embedded stdlib loaded (`require "crescent.config"` etc.) and the DSL
/// globals installed (global, defaults, frontend, backend, listen, bind, server,
/// use_backend, acl, env, log, balancer, on_reload). Evaluating the script records the
/// configuration; every Lua function given as a hook (http_request, service, ...) is
/// stored in the registry's hooks table in evaluation order, so the same script
/// evaluated in several states gives every hook the same integer id (1-based). Ids are
/// what Config carries (e.g. FrontendConfig::http_request_hook).
///
/// Not thread-safe: one thread uses a state at a time. Destroying it closes the lua_State.
class ScriptState {
 public:
  ~ScriptState();
  ScriptState(const ScriptState&) = delete;
  ScriptState& operator=(const ScriptState&) = delete;

  /// Creates a state and evaluates the script at `path`. Errors are `file:line: message`
  /// (syntax errors, runtime errors, DSL errors such as unknown keys).
  static core::Result<std::unique_ptr<ScriptState>> load(const std::string& path);

  /// Builds the C++ configuration from what the script declared. Errors are
  /// `file:line: message` naming the object and key (bad address, missing backend...).
  core::Result<std::shared_ptr<core::Config>> buildConfig() const;

  /// Pushes hook `id` (a function) onto the stack; returns false (pushing nothing) when
  /// there is no such hook.
  bool pushHook(int id) const;

  lua_State* L() const { return L_; }

 private:
  explicit ScriptState(lua_State* L) : L_(L) {}
  lua_State* L_;
};

}  // namespace crescent::lua
