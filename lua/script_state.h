#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/base/status.h"
#include "core/config/config.h"

#include "lua/coroutine.h"

struct lua_State;

namespace crescent::lua {

class TimerSet;
class SocketPool;
struct LuaMemory;

/// Default wall-clock budget for evaluating a config script (ms). A script still running
/// after it fails to load with "config script exceeded its time budget".
inline constexpr uint64_t kDefaultScriptLoadBudgetMs = 10000;

/// How ScriptState::load evaluates a script.
struct ScriptLoadOptions {
  uint64_t budget_ms = kDefaultScriptLoadBudgetMs;  ///< 0 = unlimited
  /// Bytes the state may hold while Lua runs (global.lua.maxmem, lua_memory.h); 0 = no cap.
  /// Holds during the evaluation too.
  uint64_t maxmem = 0;
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
/// Memory: the state is made with lua_newstate and a counting allocator (lua_memory.h),
/// which Debian 12's LuaJIT 2.1 (GC64 on x86_64) accepts. LuaJIT builds without GC64 on
/// x86_64 refuse a custom allocator (lua_newstate returns NULL): the state then falls
/// back to luaL_newstate, and maxmem is not enforced (a warning says so once).
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
  /// Same, onto `L`: a thread (coroutine) of this state.
  bool pushHook(lua_State* L, int id) const;

  /// Turns LuaJIT's compiler on for what runs in this state from now on
  /// (`global { lua_jit = true }`). The time budget then no longer cuts loops that were
  /// compiled (run_budget.h): docs/lua-api.md, "The JIT compiler".
  void enableJit();

  /// Number of hooks the script registered (ids are 1..hookCount()).
  int hookCount() const;

  lua_State* L() const { return L_; }
  const std::string& path() const { return path_; }
  const std::string& script() const { return script_; }

  /// What the state's coroutines share (coroutine.h), its timers (crescent.timer) and
  /// its cosockets' keepalive pool (crescent.socket): made with the state, so that the
  /// script's own evaluation may already ask for timers (they start once a worker binds
  /// the state to its loop).
  CoroutineHost& host() { return host_; }
  /// The state's allocator and its count (lua_memory.h); nullptr when this LuaJIT build
  /// refused a custom allocator and the state uses LuaJIT's own (no count, no cap).
  LuaMemory* memory() const { return memory_.get(); }
  /// Sets the cap (bytes, 0 = none) for what runs from now on; false when it cannot be
  /// enforced (memory() == nullptr).
  bool setMemoryLimit(uint64_t bytes);
  TimerSet& timers() { return *timers_; }
  SocketPool& sockets() { return *sockets_; }

 private:
  ScriptState(lua_State* L, std::unique_ptr<LuaMemory> memory);
  core::Status evaluate(const LoadOptions& options);

  std::unique_ptr<LuaMemory> memory_;  // outlives L_ (closed in the destructor's body)
  lua_State* L_;
  CoroutineHost host_;
  std::unique_ptr<TimerSet> timers_;  // before lua_close: they hold registry refs
  std::unique_ptr<SocketPool> sockets_;
  std::string path_;
  std::string script_;
};

}  // namespace crescent::lua
