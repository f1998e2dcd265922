#include "lua/hook_runner.h"

#include <lua.hpp>

#include <string>

#include "lua/lua_util.h"
#include "lua/run_budget.h"

namespace crescent::lua {

HookRunner::HookRunner(std::unique_ptr<ScriptState> state, uint64_t budget_ms)
    : state_(std::move(state)), budget_ms_(budget_ms) {
  registerTxn(state_->L());
  registerApplet(state_->L());
}

HookRunner::~HookRunner() = default;

std::string HookRunner::call(int id, const char* what, void (*push)(lua_State*, ActiveCall&)) {
  lua_State* L = state_->L();
  int top = lua_gettop(L);
  lua_pushcfunction(L, &tracebackHandler);
  int handler = lua_gettop(L);
  if (!state_->pushHook(id)) {
    lua_settop(L, top);
    return std::string("no Lua ") + what + " with id " + std::to_string(id);
  }
  ++active_.serial;
  active_.active = true;
  push(L, active_);
  int rc;
  {
    RunBudget budget(L, budget_ms_, "hook");
    rc = lua_pcall(L, 1, 0, handler);
  }
  active_.active = false;
  std::string error;
  if (rc != 0) {
    error = describeError(L, -1);
    if (error.empty()) error = "Lua error";
  }
  lua_settop(L, top);
  return error;
}

core::HookDecision HookRunner::runHttpRequest(int hook_id, core::RequestContext& ctx) {
  core::HookDecision decision;
  active_.ctx = &ctx;
  active_.decision = &decision;
  active_.service = nullptr;
  std::string error = call(hook_id, "http_request hook", &pushTxn);
  active_.ctx = nullptr;
  active_.decision = nullptr;
  if (!error.empty()) {
    decision = core::HookDecision();
    decision.kind = core::HookDecision::Kind::kFail;
    decision.error = std::move(error);
  }
  return decision;
}

core::ServiceResponse HookRunner::runService(int service_id, core::RequestContext& ctx,
                                             std::string_view body) {
  core::ServiceResponse response;
  ServiceCall svc;
  svc.response = &response;
  svc.body = body;
  active_.ctx = &ctx;
  active_.decision = nullptr;
  active_.service = &svc;
  std::string error = call(service_id, "service", &pushApplet);
  active_.ctx = nullptr;
  active_.service = nullptr;
  if (!error.empty()) {
    response = core::ServiceResponse();
    response.ok = false;
    response.status = 500;
    response.error = std::move(error);
  }
  return response;
}

}  // namespace crescent::lua
