#include "lua/hook_runner.h"

#include <lua.hpp>

#include <string>

#include "core/base/log.h"
#include "lua/http_util.h"
#include "lua/lua_memory.h"
#include "lua/lua_txn.h"
#include "lua/lua_util.h"
#include "lua/run_budget.h"
#include "lua/server_binding.h"
#include "lua/socket_binding.h"
#include "lua/timers.h"

namespace crescent::lua {

namespace {

// A phase run to completion (no loop): nobody waits, since it cannot wait.
struct NoWaiter final : core::ScriptWaiter {
  void onScriptDone() override {}
};

}  // namespace

HookRunner::HookRunner(std::unique_ptr<ScriptState> state, uint64_t budget_ms)
    : state_(std::move(state)), budget_ms_(budget_ms) {
  registerTxn(state_->L());
  registerApplet(state_->L());
  registerConn(state_->L());
  state_->host().budget_ms = budget_ms_;
}

HookRunner::~HookRunner() = default;

std::unique_ptr<core::ScriptTxn> HookRunner::newTxn(core::RequestContext& ctx) {
  return std::make_unique<LuaTxn>(*this, ctx);
}

void HookRunner::bindLoop(core::EventLoop& loop) {
  state_->host().loop = &loop;
  state_->timers().start();
}

void HookRunner::retire(bool stopping) {
  state_->timers().retire(stopping);
  if (stopping) state_->sockets().clear();
}

core::ScriptStats HookRunner::stats() const {
  core::ScriptStats s;
  CoroutineHost& host = state_->host();
  s.coroutines = host.live;
  s.waiting = host.waiting;
  s.timers = state_->timers().pending();
  s.sockets = state_->sockets().open();
  s.memory_bytes = static_cast<uint64_t>(lua_gc(state_->L(), LUA_GCCOUNT, 0)) * 1024 +
                   static_cast<uint64_t>(lua_gc(state_->L(), LUA_GCCOUNTB, 0));
  s.run_us = host.run_us;
  if (const LuaMemory* m = state_->memory()) {
    s.memory_limit = m->limit;
    s.memory_limit_hits = m->limit_hits;
  }
  return s;
}

core::HookDecision HookRunner::runHttpRequest(int hook_id, core::RequestContext& ctx) {
  core::HookDecision d;
  NoWaiter w;
  LuaTxn t(*this, ctx);
  (void)t.httpRequest(hook_id, d, w);  // without a loop nothing can wait: always done
  return d;
}

core::HookDecision HookRunner::runHttpResponse(int hook_id, core::RequestContext& ctx) {
  core::HookDecision d;
  NoWaiter w;
  LuaTxn t(*this, ctx);
  (void)t.httpResponse(hook_id, d, w);
  return d;
}

core::ServiceResponse HookRunner::runService(int service_id, core::RequestContext& ctx,
                                             std::string_view body) {
  core::ServiceResponse r;
  NoWaiter w;
  LuaTxn t(*this, ctx);
  (void)t.service(service_id, body, r, w);
  return r;
}

core::Server* HookRunner::runBalancerPick(const core::LuaBalancerConfig& lb, core::Backend& backend,
                                          core::RequestContext& ctx,
                                          const std::vector<core::Server*>& candidates,
                                          std::string& error) {
  core::PickResult p;
  NoWaiter w;
  LuaTxn t(*this, ctx);
  (void)t.balancerPick(lb, backend, candidates, p, w);
  error = std::move(p.error);
  return p.server;
}

core::LogDecision HookRunner::runLog(int hook_id, core::RequestContext& ctx,
                                     const core::LogInfo& info) {
  core::LogDecision d;
  LuaTxn t(*this, ctx);
  t.log(hook_id, info, d);
  return d;
}

void HookRunner::attach(core::Generation& gen) {
  attachGeneration(state_->L(), gen);
}

std::string HookRunner::pcallBudget(int nargs, int nresults, int handler, const char* what) {
  lua_State* L = state_->L();
  int rc;
  {
    RunBudget budget(L, budget_ms_, what, lua_gettop(L) - nargs);
    rc = lua_pcall(L, nargs, nresults, handler);
  }
  if (rc == 0) return {};
  std::string error = explainMemoryError(L, describeError(L, -1));
  lua_pop(L, 1);
  return error.empty() ? std::string("Lua error") : error;
}

namespace {

constexpr const char* kBalancerStateKey = "crescent.balancer_state";
constexpr const char* kCandidatesKey = "crescent.balancer_candidates";

}  // namespace

std::string HookRunner::pushBalancerState(const core::LuaBalancerConfig& lb,
                                          core::Backend& backend) {
  lua_State* L = state_->L();
  pushRegistryTable(L, kBalancerStateKey);
  lua_pushlightuserdata(L, &backend);
  lua_rawget(L, -2);
  if (!lua_isnil(L, -1)) {
    lua_remove(L, -2);
    return {};
  }
  lua_pop(L, 1);
  // First use in this state: state = init(backend) or {} (a table either way, so that
  // pick and on_release may keep data in it).
  std::string error;
  int tbl = lua_gettop(L);
  if (lb.init_hook > 0) {
    lua_pushcfunction(L, &tracebackHandler);
    int handler = lua_gettop(L);
    if (!state_->pushHook(lb.init_hook)) {
      lua_settop(L, tbl - 1);
      return "no Lua init function with id " + std::to_string(lb.init_hook);
    }
    pushBackend(L, backend);
    error = pcallBudget(1, 1, handler, "balancer init");
    if (!error.empty()) {
      lua_settop(L, tbl - 1);
      return "init: " + error;
    }
    lua_remove(L, handler);
  } else {
    lua_pushnil(L);
  }
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_pushlightuserdata(L, &backend);
  lua_pushvalue(L, -2);
  lua_rawset(L, tbl);
  lua_remove(L, tbl);
  return {};
}

std::string HookRunner::pushPickArgs(const core::LuaBalancerConfig& lb, core::Backend& backend,
                                     const std::vector<core::Server*>& candidates) {
  lua_State* L = state_->L();
  int top = lua_gettop(L);
  // The servers list: one table per backend, refilled for each call from an array of
  // the backend's server objects (by index), both kept in the registry.
  pushRegistryTable(L, kCandidatesKey);
  lua_pushlightuserdata(L, &backend);
  lua_rawget(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_createtable(L, static_cast<int>(backend.servers().size()), 0);
    lua_rawseti(L, -2, 1);
    lua_createtable(L, static_cast<int>(backend.servers().size()), 0);
    for (size_t i = 0; i < backend.servers().size(); ++i) {
      pushServer(L, *backend.servers()[i]);
      lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
    lua_rawseti(L, -2, 2);
    lua_pushlightuserdata(L, &backend);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
  lua_rawgeti(L, -1, 2);  // all servers, by index
  int all = lua_gettop(L);
  lua_rawgeti(L, -2, 1);  // the list given to pick
  lua_remove(L, -3);
  int list = lua_gettop(L);
  int n = static_cast<int>(candidates.size());
  for (int i = 0; i < n; ++i) {
    lua_rawgeti(L, all, static_cast<int>(candidates[i]->index() + 1));
    lua_rawseti(L, list, i + 1);
  }
  lua_remove(L, all);
  list = lua_gettop(L);
  for (int i = n + 1; i <= static_cast<int>(backend.servers().size()); ++i) {
    lua_rawgeti(L, list, i);
    bool was_nil = lua_isnil(L, -1);
    lua_pop(L, 1);
    if (was_nil) break;
    lua_pushnil(L);
    lua_rawseti(L, list, i);
  }
  std::string error = pushBalancerState(lb, backend);
  if (!error.empty()) lua_settop(L, top);
  return error;
}

void HookRunner::runBalancerRelease(const core::LuaBalancerConfig& lb, core::Backend& backend,
                                    core::Server& server, uint64_t time_ms, int status,
                                    bool failed) {
  lua_State* L = state_->L();
  int top = lua_gettop(L);
  lua_pushcfunction(L, &tracebackHandler);
  int handler = lua_gettop(L);
  if (!state_->pushHook(lb.release_hook)) {
    lua_settop(L, top);
    return;
  }
  pushServer(L, server);
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, static_cast<lua_Number>(time_ms));
  lua_setfield(L, -2, "time");
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  lua_pushboolean(L, failed);
  lua_setfield(L, -2, "error");
  std::string error = pushBalancerState(lb, backend);
  if (error.empty()) error = pcallBudget(3, 0, handler, "balancer on_release");
  if (!error.empty()) {
    core::logWarning("backend \"{}\": balancer \"{}\": on_release: {}", backend.name(), lb.name,
                     error);
  }
  lua_settop(L, top);
}

bool HookRunner::runCheckExpect(int hook_id, const core::CheckResponse& res,
                                const core::Server& server, std::string& reason) {
  lua_State* L = state_->L();
  int top = lua_gettop(L);
  lua_pushcfunction(L, &tracebackHandler);
  int handler = lua_gettop(L);
  if (!state_->pushHook(hook_id)) {
    lua_settop(L, top);
    reason = "no Lua expect function with id " + std::to_string(hook_id);
    return false;
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, res.status);
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, res.body.data(), res.body.size());
  lua_setfield(L, -2, "body");
  lua_pushnumber(L, static_cast<lua_Number>(res.elapsed_ms));
  lua_setfield(L, -2, "time");
  if (res.head != nullptr) {
    pushHeaderTable(L, *res.head);
    lua_setfield(L, -2, "headers");
  }
  pushServer(L, const_cast<core::Server&>(server));
  std::string error = pcallBudget(2, 2, handler, "health check expect");
  if (!error.empty()) {
    reason = "expect raised: " + error;
    lua_settop(L, top);
    return false;
  }
  bool ok = lua_toboolean(L, -2) != 0;
  if (!ok) {
    size_t len = 0;
    const char* r = lua_isstring(L, -1) ? lua_tolstring(L, -1, &len) : nullptr;
    reason = r != nullptr ? std::string(r, len) : std::string("expect returned false");
  }
  lua_settop(L, top);
  return ok;
}

namespace {

// "cfg.lua:12: no way" -> "cfg.lua:12: on_reload: no way": the location stays first, as
// in every config error (`file:line: message`). Without a location, `what` leads.
std::string insertAfterLocation(const std::string& msg, const char* what) {
  for (size_t colon = msg.find(':'); colon != std::string::npos; colon = msg.find(':', colon + 1)) {
    size_t digits = colon + 1;
    while (digits < msg.size() && msg[digits] >= '0' && msg[digits] <= '9') ++digits;
    if (digits > colon + 1 && msg.compare(digits, 2, ": ") == 0)
      return msg.substr(0, digits + 2) + what + msg.substr(digits + 2);
  }
  return what + msg;
}

// { id = N, path = "...", frontends = { names }, backends = { names } }: one side of a
// reload as on_reload(prev, next) sees it.
void pushGenerationInfo(lua_State* L, uint64_t id, const core::Config* cfg) {
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, static_cast<lua_Number>(id));
  lua_setfield(L, -2, "id");
  if (cfg == nullptr) return;
  lua_pushlstring(L, cfg->path.data(), cfg->path.size());
  lua_setfield(L, -2, "path");
  auto pushNames = [L](const auto& sections, const char* field) {
    lua_createtable(L, static_cast<int>(sections.size()), 0);
    for (size_t i = 0; i < sections.size(); ++i) {
      lua_pushlstring(L, sections[i].name.data(), sections[i].name.size());
      lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
    lua_setfield(L, -2, field);
  };
  pushNames(cfg->frontends, "frontends");
  pushNames(cfg->backends, "backends");
}

}  // namespace

core::Status HookRunner::runReloadHooks(const core::ReloadInfo& info) {
  if (info.next == nullptr) return core::Status();
  lua_State* L = state_->L();
  int top = lua_gettop(L);
  for (int id : info.next->reload_hooks) {
    lua_pushcfunction(L, &messageHandler);
    int handler = lua_gettop(L);
    if (!state_->pushHook(id)) {
      lua_settop(L, top);
      continue;
    }
    pushGenerationInfo(L, info.prev_id, info.prev);
    pushGenerationInfo(L, info.next_id, info.next);
    std::string error = pcallBudget(2, 0, handler, "on_reload");
    lua_settop(L, top);
    if (!error.empty()) return core::Status::error(insertAfterLocation(error, "on_reload: "));
  }
  return core::Status();
}

}  // namespace crescent::lua
