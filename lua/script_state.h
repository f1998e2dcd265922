#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/base/status.h"
#include "core/config/config.h"

struct lua_State;

namespace crescent::lua {

/// Default wall-clock budget for evaluating a config script (ms). A script still running
/// after it fails to load with "config script exceeded its time budget".
inline constexpr uint64_t kDefaultScriptLoadBudgetMs = 10000;

/// How ScriptState::load evaluates a script.
struct ScriptLoadOptions {
  uint64_t budget_ms = kDefaultScriptLoadBudgetMs;  ///< 0 = unlimited
  /// Drop what the script logs (log.info...) while it is evaluated. For the worker
  /// states, which evaluate the script again after the main thread did: its log lines
  /// then appear once. Hooks log normally afterwards.
  bool quiet = false;
  /// Texts of Lua modules by file path (Config::files / Config::file_texts): `require`
  /// of such a file uses this text instead of reading the file again, so every worker's
  /// state runs exactly the modules the main thread's evaluation read.
  std::vector<std::pair<std::string, std::string>> modules;
};

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
/// Sandbox (DESIGN §5): string, table, math, bit, coroutine, os.getenv/time/clock/date,
/// and `require` of the embedded modules and of Lua files next to the config; no io,
/// debug, dofile, loadfile, os.exit/execute. The JIT compiler is off (see run_budget.h).
///
/// Not thread-safe: one thread uses a state at a time. Destroying it closes the lua_State.
class ScriptState {
 public:
  using LoadOptions = ScriptLoadOptions;
  static constexpr uint64_t kDefaultLoadBudgetMs = kDefaultScriptLoadBudgetMs;

  ~ScriptState();
  ScriptState(const ScriptState&) = delete;
  ScriptState& operator=(const ScriptState&) = delete;

  /// Creates a state and evaluates the script at `path`. Errors are `file:line: message`
  /// (syntax errors, runtime errors, DSL errors such as unknown keys), or
  /// `cannot read config "path": reason`.
  static core::Result<std::unique_ptr<ScriptState>> load(const std::string& path,
                                                         const LoadOptions& options = {});

  /// Same, with the script's text given (e.g. a config uploaded through the config API).
  /// `path` names it in errors and locates the modules it requires (its directory).
  static core::Result<std::unique_ptr<ScriptState>> loadSource(const std::string& path,
                                                               std::string text,
                                                               const LoadOptions& options = {});

  /// Builds the C++ configuration from what the script declared. Errors are
  /// `file:line: message` naming the object and key (bad address, missing backend...).
  /// Config::path and Config::script are this state's path and script text.
  core::Result<std::shared_ptr<core::Config>> buildConfig() const;

  /// Pushes hook `id` (a function) onto the stack; returns false (pushing nothing) when
  /// there is no such hook.
  bool pushHook(int id) const;

  /// Number of hooks the script registered (ids are 1..hookCount()).
  int hookCount() const;

  lua_State* L() const { return L_; }
  const std::string& path() const { return path_; }
  const std::string& script() const { return script_; }

 private:
  explicit ScriptState(lua_State* L) : L_(L) {}
  core::Status evaluate(const LoadOptions& options);

  lua_State* L_;
  std::string path_;
  std::string script_;
};

}  // namespace crescent::lua
