#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/session/hooks.h"
#include "lua/call_context.h"
#include "lua/coroutine.h"
#include "lua/script_scope.h"

namespace crescent::lua {

class HookRunner;

/// The Lua side of one exchange or TCP session (core::ScriptTxn): one `txn` userdata
/// for every phase (its txn.ctx table lives as long), each phase a Coroutine of the
/// runner's state. Sockets the phases open belong to the txn's scope and close with it.
class LuaTxn final : public core::ScriptTxn, private Coroutine::Owner {
 public:
  LuaTxn(HookRunner& runner, core::RequestContext& ctx);
  ~LuaTxn() override;
  LuaTxn(const LuaTxn&) = delete;
  LuaTxn& operator=(const LuaTxn&) = delete;

  core::ScriptStatus httpRequest(int hook_id, core::HookDecision& out,
                                 core::ScriptWaiter& w) override;
  core::ScriptStatus httpResponse(int hook_id, core::HookDecision& out,
                                  core::ScriptWaiter& w) override;
  core::ScriptStatus service(int service_id, std::string_view body, core::ServiceResponse& out,
                             core::ScriptWaiter& w) override;
  core::ScriptStatus balancerPick(const core::LuaBalancerConfig& lb, core::Backend& backend,
                                  const std::vector<core::Server*>& candidates,
                                  core::PickResult& out, core::ScriptWaiter& w) override;
  core::ScriptStatus tcpRequest(int hook_id, core::ConnectionPeek& peek, core::ConnDecision& out,
                                core::ScriptWaiter& w) override;
  void rebind(core::RequestContext& ctx) override;
  void log(int hook_id, const core::LogInfo& info, core::LogDecision& out) override;
  void errorPage(int hook_id, int status, bool with_txn, core::ErrorPageResult& out) override;
  void cancel() override;

 private:
  /// Runs hook `id` in a new coroutine with the txn (or an applet) and `extra` more
  /// arguments already pushed on the main thread. `waiter` null: the phase may not wait.
  core::ScriptStatus start(int id, Phase phase, const char* what, int extra,
                           core::ScriptWaiter* waiter);
  void onCoroutineEnd(Coroutine& co) override;
  /// The phase's results into its out-parameter.
  void finishPhase();
  void pushTxn(lua_State* L);

  HookRunner& r_;
  core::RequestContext* ctx_;
  int txn_ref_ = -1;
  ActiveCall* call_ = nullptr;  // inside the txn userdata (kept by txn_ref_)
  std::unique_ptr<Coroutine> co_;
  ScriptScope scope_;
  core::ScriptWaiter* waiter_ = nullptr;
  // The phase in progress and its out-parameter.
  Phase phase_ = Phase::kRequest;
  core::HookDecision* decision_ = nullptr;
  core::ServiceResponse* service_out_ = nullptr;
  ServiceCall service_;
  core::PickResult* pick_ = nullptr;
  const std::vector<core::Server*>* candidates_ = nullptr;
  core::LogDecision* log_ = nullptr;
  core::ErrorPageResult* error_page_ = nullptr;
  bool with_txn_ = true;  // error_page: false passes nil for txn
  core::ConnDecision* conn_ = nullptr;
  core::ConnectionPeek* peek_ = nullptr;
  std::string missing_;  // the error when the hook id is unknown
};

}  // namespace crescent::lua
