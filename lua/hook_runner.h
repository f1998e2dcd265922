#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/session/hooks.h"
#include "lua/call_context.h"
#include "lua/coroutine.h"
#include "lua/script_state.h"

namespace crescent::lua {

/// Runs one generation's Lua hooks on one worker thread (core::ScriptRunner).
///
/// Owns the worker's ScriptState. Every exchange's phases run through a ScriptTxn
/// (lua_txn.cc) as coroutines of this state (coroutine.h): a hook may wait on the
/// worker's loop (crescent.sleep, sockets, crescent.http) once bindLoop() gave it one. A
/// hook that raises, or that runs longer than the budget (Lua running time between
/// waits), fails its phase with the message and the Lua traceback; the state stays
/// usable for the next call. Not thread-safe. Neither copyable nor movable: handles
/// point into it.
class HookRunner : public core::ScriptRunner {
 public:
  static constexpr uint64_t kDefaultBudgetMs = 1000;

  /// budget_ms: Lua running time allowed to one phase (hook, service, pick); 0 = unlimited.
  explicit HookRunner(std::unique_ptr<ScriptState> state, uint64_t budget_ms = kDefaultBudgetMs);
  ~HookRunner() override;
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  std::unique_ptr<core::ScriptTxn> newTxn(core::RequestContext& ctx) override;
  void attach(core::Generation& gen) override;
  void bindLoop(core::EventLoop& loop) override;
  void retire(bool stopping) override;
  core::ScriptStats stats() const override;

  // One phase run to completion on `ctx`, without a loop (a wait is an error): callers
  // that have no exchange, and the tests.
  core::HookDecision runHttpRequest(int hook_id, core::RequestContext& ctx);
  core::HookDecision runHttpResponse(int hook_id, core::RequestContext& ctx);
  core::ServiceResponse runService(int service_id, core::RequestContext& ctx,
                                   std::string_view body);
  core::Server* runBalancerPick(const core::LuaBalancerConfig& lb, core::Backend& backend,
                                core::RequestContext& ctx,
                                const std::vector<core::Server*>& candidates, std::string& error);
  core::LogDecision runLog(int hook_id, core::RequestContext& ctx, const core::LogInfo& info);

  void runBalancerRelease(const core::LuaBalancerConfig& lb, core::Backend& backend,
                          core::Server& server, uint64_t time_ms, int status, bool failed) override;
  bool runCheckExpect(int hook_id, const core::CheckResponse& res, const core::Server& server,
                      std::string& reason) override;
  core::Status runReloadHooks(const core::ReloadInfo& info) override;

  ScriptState& state() { return *state_; }
  uint64_t budgetMs() const { return budget_ms_; }
  CoroutineHost& host() { return state_->host(); }

  /// Pushes, on the state's main thread, the arguments of a balancer's pick after the
  /// txn: the servers list (`candidates`) and the balancer's state for `backend` (calling
  /// its init the first time). Returns the error text, or "" (then 2 values are pushed).
  std::string pushPickArgs(const core::LuaBalancerConfig& lb, core::Backend& backend,
                           const std::vector<core::Server*>& candidates);

 private:
  /// Calls the function on the stack below its `nargs` arguments (and above the
  /// traceback handler at `handler`) with the budget; returns the error text or "".
  std::string pcallBudget(int nargs, int nresults, int handler, const char* what);
  /// Pushes the balancer state of `backend` (what init(backend) returned), calling init
  /// the first time. Returns the error text of init, or "".
  std::string pushBalancerState(const core::LuaBalancerConfig& lb, core::Backend& backend);

  std::unique_ptr<ScriptState> state_;
  uint64_t budget_ms_;
};

}  // namespace crescent::lua
