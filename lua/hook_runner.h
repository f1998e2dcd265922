#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/session/hooks.h"
#include "lua/call_context.h"
#include "lua/script_state.h"

namespace crescent::lua {

/// Runs one generation's Lua hooks on one worker thread (core::ScriptRunner).
///
/// Owns the worker's ScriptState. Each call gets fresh `txn`/`applet` objects that are
/// valid only during the call (docs/lua-api.md). A hook that raises, or that runs longer
/// than the budget, gives kFail / ok = false with the message and the Lua traceback; the
/// state stays usable for the next call. Not thread-safe; not re-entrant (a hook cannot
/// call back into the runner). Neither copyable nor movable: handles point into it.
class HookRunner : public core::ScriptRunner {
 public:
  static constexpr uint64_t kDefaultBudgetMs = 1000;

  /// budget_ms: wall-clock budget of one hook or service call; 0 = unlimited.
  explicit HookRunner(std::unique_ptr<ScriptState> state, uint64_t budget_ms = kDefaultBudgetMs);
  ~HookRunner() override;
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  core::HookDecision runHttpRequest(int hook_id, core::RequestContext& ctx) override;
  core::ServiceResponse runService(int service_id, core::RequestContext& ctx,
                                   std::string_view body) override;
  void attach(core::Generation& gen) override;
  core::Server* runBalancerPick(const core::LuaBalancerConfig& lb, core::Backend& backend,
                                core::RequestContext& ctx,
                                const std::vector<core::Server*>& candidates,
                                std::string& error) override;
  void runBalancerRelease(const core::LuaBalancerConfig& lb, core::Backend& backend,
                          core::Server& server, uint64_t time_ms, int status, bool failed) override;
  bool runCheckExpect(int hook_id, const core::CheckResponse& res, const core::Server& server,
                      std::string& reason) override;
  core::Status runReloadHooks(const core::ReloadInfo& info) override;

  ScriptState& state() { return *state_; }
  uint64_t budgetMs() const { return budget_ms_; }

 private:
  /// Calls hook `id` with the handle pushed by `push`; returns the error text (message
  /// and traceback) or an empty string.
  std::string call(int id, const char* what, void (*push)(lua_State*, ActiveCall&));
  /// Calls the function on the stack below its `nargs` arguments (and above the
  /// traceback handler at `handler`) with the budget; returns the error text or "".
  std::string pcallBudget(int nargs, int nresults, int handler, const char* what);
  /// Pushes the balancer state of `backend` (what init(backend) returned), calling init
  /// the first time. Returns the error text of init, or "".
  std::string pushBalancerState(const core::LuaBalancerConfig& lb, core::Backend& backend);

  std::unique_ptr<ScriptState> state_;
  uint64_t budget_ms_;
  ActiveCall active_;
};

}  // namespace crescent::lua
