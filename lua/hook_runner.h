#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

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

  ScriptState& state() { return *state_; }
  uint64_t budgetMs() const { return budget_ms_; }

 private:
  /// Calls hook `id` with the handle pushed by `push`; returns the error text (message
  /// and traceback) or an empty string.
  std::string call(int id, const char* what, void (*push)(lua_State*, ActiveCall&));

  std::unique_ptr<ScriptState> state_;
  uint64_t budget_ms_;
  ActiveCall active_;
};

}  // namespace crescent::lua
