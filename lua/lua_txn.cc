#include "lua/lua_txn.h"

#include <lua.hpp>

#include "lua/hook_runner.h"
#include "lua/http_util.h"
#include "lua/lua_util.h"
#include "lua/server_binding.h"

namespace crescent::lua {
namespace {

// info for log(txn, info): the timers, bytes, status, termination, names.
void pushLogInfo(lua_State* L, const core::LogInfo& i) {
  lua_createtable(L, 0, 14);
  auto num = [L](const char* k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
  };
  auto str = [L](const char* k, std::string_view v) {
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, k);
  };
  num("Tq", static_cast<double>(i.tq));
  num("Tw", static_cast<double>(i.tw));
  num("Tc", static_cast<double>(i.tc));
  num("Tr", static_cast<double>(i.tr));
  num("Ta", static_cast<double>(i.ta));
  num("status", i.status);
  num("bytes", static_cast<double>(i.bytes_out));
  num("bytes_in", static_cast<double>(i.bytes_in));
  num("retries", i.retries);
  str("termination", i.termination);
  str("backend", i.backend);
  str("server", i.server);
  str("line", i.line);
}

// What error_page returned at `idx`: { status, headers, body } or the same named.
void readErrorPage(lua_State* L, int idx, core::ErrorPageResult& out) {
  if (!lua_istable(L, idx)) {
    out.error = std::string("error_page must return { status, headers, body } or nil (got ") +
                luaL_typename(L, idx) + ")";
    return;
  }
  auto field = [L, idx](int pos, const char* name) {
    lua_rawgeti(L, idx, pos);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_getfield(L, idx, name);
    }
  };
  field(1, "status");
  lua_Number status = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
  lua_pop(L, 1);
  if (status < 100 || status > 999 || status != static_cast<int>(status)) {
    out.error = "error_page: the status must be an integer from 100 to 999";
    return;
  }
  out.status = static_cast<int>(status);
  field(2, "headers");
  if (lua_istable(L, -1)) {
    std::string why;
    if (!readHeaderTable(L, -1, out.headers, why)) {
      lua_pop(L, 1);
      out.error = "error_page: " + why;
      return;
    }
  } else if (!lua_isnil(L, -1)) {
    lua_pop(L, 1);
    out.error = "error_page: headers must be a table";
    return;
  }
  lua_pop(L, 1);
  field(3, "body");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len = 0;
    const char* b = lua_tolstring(L, -1, &len);
    out.body.assign(b, len);
  } else if (!lua_isnil(L, -1)) {
    lua_pop(L, 1);
    out.error = "error_page: body must be a string";
    return;
  }
  lua_pop(L, 1);
  out.page = true;
}

}  // namespace

LuaTxn::LuaTxn(HookRunner& runner, core::RequestContext& ctx) : r_(runner), ctx_(&ctx) {}

void LuaTxn::rebind(core::RequestContext& ctx) {
  ctx_ = &ctx;
  if (call_ != nullptr) call_->ctx = ctx_;
}

LuaTxn::~LuaTxn() {
  co_.reset();  // cancels a phase that waits
  scope_.closeAll();
  if (call_ != nullptr) {
    call_->active = false;  // a txn kept by the script is a dead handle from now on
    call_->ctx = nullptr;
    call_->decision = nullptr;
    call_->service = nullptr;
    call_->peek = nullptr;
    call_->conn_decision = nullptr;
  }
  if (txn_ref_ >= 0) luaL_unref(r_.host().L, LUA_REGISTRYINDEX, txn_ref_);
}

void LuaTxn::cancel() {
  co_.reset();
  waiter_ = nullptr;
}

// The txn userdata, made on first use and kept for every phase.
void LuaTxn::pushTxn(lua_State* L) {
  if (txn_ref_ < 0) {
    lua_State* main = r_.host().L;
    call_ = &pushNewTxn(main);
    call_->ctx = ctx_;
    txn_ref_ = luaL_ref(main, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, txn_ref_);
}

core::ScriptStatus LuaTxn::start(int id, Phase phase, const char* what, int extra,
                                 core::ScriptWaiter* waiter) {
  lua_State* main = r_.host().L;
  co_.reset();
  co_ = std::make_unique<Coroutine>(r_.host(), what, waiter != nullptr,
                                    static_cast<Coroutine::Owner*>(this));
  co_->setScope(&scope_);
  lua_State* L = co_->L();
  if (!r_.state().pushHook(L, id)) {
    lua_pop(main, extra);
    co_.reset();
    missing_ = std::string("no Lua ") + what + " with id " + std::to_string(id);
    finishPhase();  // as a failure
    return core::ScriptStatus::kDone;
  }
  pushTxn(L);
  call_->phase = phase;
  ++call_->serial;
  call_->ctx = ctx_;
  call_->decision = decision_;
  call_->service = phase == Phase::kService ? &service_ : nullptr;
  call_->peek = phase == Phase::kConnection ? peek_ : nullptr;
  call_->conn_decision = phase == Phase::kConnection ? conn_ : nullptr;
  int nargs = 1;
  if (phase == Phase::kService) {
    lua_pop(L, 1);  // a service gets its applet instead of the txn
    pushApplet(L, *call_);
  } else if (phase == Phase::kConnection) {
    pushConn(L, -1);  // tcp_request gets conn, which shares the txn's state and ctx
    lua_remove(L, -2);
  }
  if (extra > 0) {
    lua_xmove(main, L, extra);
    nargs += extra;
  }
  if (phase == Phase::kErrorPage) {  // error_page(status, txn): the txn (or nil) goes last
    if (!with_txn_) {
      lua_pushnil(L);
      lua_replace(L, -3);
    }
    lua_insert(L, -2);
  }
  phase_ = phase;
  waiter_ = waiter;
  if (co_->run(nargs) == Coroutine::State::kWaiting) return core::ScriptStatus::kPending;
  finishPhase();
  return core::ScriptStatus::kDone;
}

void LuaTxn::onCoroutineEnd(Coroutine&) {
  finishPhase();
  core::ScriptWaiter* w = waiter_;
  waiter_ = nullptr;
  if (w != nullptr) w->onScriptDone();  // may destroy us: last statement
}

void LuaTxn::finishPhase() {
  bool failed = !co_ || co_->state() == Coroutine::State::kFailed;
  std::string error = co_ ? co_->error() : std::move(missing_);
  lua_State* L = co_ ? co_->L() : nullptr;
  switch (phase_) {
    case Phase::kConnection:
      if (failed) {
        *conn_ = core::ConnDecision();
        conn_->kind = core::ConnDecision::Kind::kFail;
        conn_->error = std::move(error);
      }
      break;
    case Phase::kRequest:
    case Phase::kResponse:
      if (failed) {
        *decision_ = core::HookDecision();
        decision_->kind = core::HookDecision::Kind::kFail;
        decision_->error = std::move(error);
      }
      break;
    case Phase::kService:
      if (failed) {
        *service_out_ = core::ServiceResponse();
        service_out_->ok = false;
        service_out_->status = 500;
        service_out_->error = std::move(error);
      }
      break;
    case Phase::kBalancer: {
      if (failed) {
        pick_->error = std::move(error);
        break;
      }
      if (co_->results() == 0 || lua_isnil(L, 1)) break;
      core::Server* s = toServer(L, 1);
      if (s == nullptr) {
        pick_->error =
            std::string("pick must return one of the servers it was given, or nil (got ") +
            luaL_typename(L, 1) + ")";
        break;
      }
      for (core::Server* c : *candidates_)
        if (c == s) pick_->server = s;
      if (pick_->server == nullptr) {
        pick_->error = "pick returned server \"" + s->name() + "\", which is not usable now (" +
                       s->stateName() + (s->full() ? ", full" : "") + ")";
      }
      break;
    }
    case Phase::kLog: {
      if (failed) {
        log_->error = std::move(error);
        break;
      }
      if (co_->results() == 0 || lua_isnil(L, 1)) break;
      if (lua_type(L, 1) == LUA_TSTRING) {
        size_t len = 0;
        const char* s = lua_tolstring(L, 1, &len);
        log_->kind = core::LogDecision::Kind::kReplace;
        log_->line.assign(s, len);
      } else if (lua_type(L, 1) == LUA_TBOOLEAN && lua_toboolean(L, 1) == 0) {
        log_->kind = core::LogDecision::Kind::kSuppress;
      } else {
        log_->error =
            std::string("log must return a string, false or nil (got ") + luaL_typename(L, 1) + ")";
      }
      break;
    }
    case Phase::kErrorPage:
      if (failed) {
        error_page_->error = std::move(error);
        break;
      }
      if (co_->results() > 0 && !lua_isnil(L, 1)) readErrorPage(L, 1, *error_page_);
      break;
  }
  if (call_ != nullptr) {
    call_->decision = nullptr;
    call_->service = nullptr;
    call_->peek = nullptr;
    call_->conn_decision = nullptr;
  }
  co_.reset();  // the thread goes back to the pool
}

core::ScriptStatus LuaTxn::httpRequest(int hook_id, core::HookDecision& out,
                                       core::ScriptWaiter& w) {
  decision_ = &out;
  return start(hook_id, Phase::kRequest, "http_request hook", 0, &w);
}

core::ScriptStatus LuaTxn::httpResponse(int hook_id, core::HookDecision& out,
                                        core::ScriptWaiter& w) {
  decision_ = &out;
  return start(hook_id, Phase::kResponse, "http_response hook", 0, &w);
}

core::ScriptStatus LuaTxn::service(int service_id, std::string_view body,
                                   core::ServiceResponse& out, core::ScriptWaiter& w) {
  service_out_ = &out;
  service_ = ServiceCall();
  service_.response = &out;
  service_.body = body;
  decision_ = nullptr;
  return start(service_id, Phase::kService, "service", 0, &w);
}

core::ScriptStatus LuaTxn::balancerPick(const core::LuaBalancerConfig& lb, core::Backend& backend,
                                        const std::vector<core::Server*>& candidates,
                                        core::PickResult& out, core::ScriptWaiter& w) {
  pick_ = &out;
  candidates_ = &candidates;
  decision_ = nullptr;
  std::string error = r_.pushPickArgs(lb, backend, candidates);
  if (!error.empty()) {
    out.error = std::move(error);
    return core::ScriptStatus::kDone;
  }
  return start(lb.pick_hook, Phase::kBalancer, "balancer", 2, &w);
}

core::ScriptStatus LuaTxn::tcpRequest(int hook_id, core::ConnectionPeek& peek,
                                      core::ConnDecision& out, core::ScriptWaiter& w) {
  conn_ = &out;
  peek_ = &peek;
  decision_ = nullptr;
  return start(hook_id, Phase::kConnection, "tcp_request hook", 0, &w);
}

void LuaTxn::log(int hook_id, const core::LogInfo& info, core::LogDecision& out) {
  log_ = &out;
  decision_ = nullptr;
  pushLogInfo(r_.host().L, info);
  start(hook_id, Phase::kLog, "log hook", 1, nullptr);
}

void LuaTxn::errorPage(int hook_id, int status, bool with_txn, core::ErrorPageResult& out) {
  error_page_ = &out;
  decision_ = nullptr;
  with_txn_ = with_txn;
  lua_pushinteger(r_.host().L, status);
  start(hook_id, Phase::kErrorPage, "error_page", 1, nullptr);
  with_txn_ = true;
}

}  // namespace crescent::lua
