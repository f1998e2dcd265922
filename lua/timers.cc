// crescent.timer (TimerSet), crescent.sleep and crescent.resolve.
#include "lua/timers.h"

#include <uv.h>
#include <lua.hpp>

#include <vector>

#include "core/base/log.h"
#include "lua/lua_util.h"

namespace crescent::lua {

struct TimerSet::Entry final : Coroutine::Owner {
  TimerSet* set = nullptr;
  uint64_t id = 0;
  uint64_t delay_ms = 0;
  bool every = false;
  int fn_ref = -1;
  int args_ref = -1;  // a table of the extra arguments
  int nargs = 0;
  core::TimerPtr timer;
  std::unique_ptr<Coroutine> run;  // the callback in progress, when it waits
  ScriptScope scope;               // its sockets

  static void onTimer(void* ctx) {
    auto* e = static_cast<Entry*>(ctx);
    e->set->fire(*e, false);
  }
  void onCoroutineEnd(Coroutine& co) override {
    if (co.state() == Coroutine::State::kFailed)
      core::logWarning("timer callback failed: {}", co.error());
    set->ended(*this);
  }
};

TimerSet::TimerSet(CoroutineHost& host) : host_(host) {}

TimerSet::~TimerSet() {
  stopAll();
}

bool TimerSet::add(lua_State* L, uint64_t delay_ms, bool every, int fn, int first,
                   std::string& error) {
  if (retired_) {
    error = "this configuration is retired (reloaded or stopping): no new timer";
    return false;
  }
  if (entries_.size() >= max_) {
    error = "too many pending timers (" + std::to_string(max_) + ", global.lua.max_timers)";
    return false;
  }
  auto e = std::make_unique<Entry>();
  e->set = this;
  e->id = next_id_++;
  e->delay_ms = delay_ms;
  e->every = every;
  lua_pushvalue(L, fn);
  e->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int top = lua_gettop(L);
  e->nargs = top >= first ? top - first + 1 : 0;
  lua_createtable(L, e->nargs, 0);
  for (int i = 0; i < e->nargs; ++i) {
    lua_pushvalue(L, first + i);
    lua_rawseti(L, -2, i + 1);
  }
  e->args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  Entry& ref = *e;
  entries_.emplace(e->id, std::move(e));
  if (started_) arm(ref);
  return true;
}

void TimerSet::arm(Entry& e) {
  if (!e.timer) e.timer = core::Timer::create(*host_.loop, &Entry::onTimer, &e);
  e.timer->start(e.delay_ms);
}

void TimerSet::start() {
  if (started_ || host_.loop == nullptr) return;
  started_ = true;
  for (auto& [id, e] : entries_) arm(*e);
}

// Runs e's callback as fn(premature, args...) in a coroutine of its own.
void TimerSet::fire(Entry& e, bool premature) {
  if (e.run) return;  // `every`: the previous run still waits; this tick is skipped
  bool may_wait = !stopping_;
  auto co = std::make_unique<Coroutine>(host_, "timer callback", may_wait,
                                        static_cast<Coroutine::Owner*>(&e));
  co->setScope(&e.scope);
  lua_State* L = co->L();
  lua_rawgeti(L, LUA_REGISTRYINDEX, e.fn_ref);
  lua_pushboolean(L, premature ? 1 : 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, e.args_ref);
  for (int i = 1; i <= e.nargs; ++i) lua_rawgeti(L, -i, i);
  lua_remove(L, -e.nargs - 1);  // the args table
  Coroutine::State s = co->run(1 + e.nargs);
  if (s == Coroutine::State::kWaiting) {
    e.run = std::move(co);
    return;
  }
  if (s == Coroutine::State::kFailed) core::logWarning("timer callback failed: {}", co->error());
  co.reset();
  ended(e);
}

// A run is over: `at` timers go, `every` timers wait for their next tick (unless retired).
void TimerSet::ended(Entry& e) {
  e.run.reset();  // may be the caller (its last statement): it is not used again
  e.scope.closeAll();
  if (!e.every || retired_) return erase(e);
  arm(e);
}

void TimerSet::erase(Entry& e) {
  lua_State* L = host_.L;
  luaL_unref(L, LUA_REGISTRYINDEX, e.fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, e.args_ref);
  entries_.erase(e.id);
}

void TimerSet::retire(bool stopping) {
  retired_ = true;
  stopping_ = stopping;
  std::vector<uint64_t> ids;
  for (auto& [id, e] : entries_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    Entry& e = *it->second;
    if (e.timer) e.timer->stop();
    if (e.run) {
      if (stopping) {
        e.run.reset();  // cancelled: nothing survives a stop
        erase(e);
      }
      continue;  // a reload: it finishes on the old configuration, then goes
    }
    if (started_) {
      fire(e, true);
    } else {
      erase(e);  // never started (no loop): nothing to run it on
    }
  }
}

void TimerSet::stopAll() {
  retired_ = true;
  while (!entries_.empty()) {
    Entry& e = *entries_.begin()->second;
    e.run.reset();
    erase(e);
  }
}

// ---------------------------------------------------------------- Lua functions

namespace {

// The coroutine a waiting function may suspend, or a Lua error saying why not.
Coroutine* waitingCoroutine(lua_State* L, const char* fn) {
  Coroutine* co = Coroutine::running(L);
  if (co == nullptr) {
    luaL_error(L,
               "%s: cannot wait here (only hooks, services, balancers and timer callbacks "
               "running on a worker may wait; not the configuration's evaluation or a "
               "coroutine of the script's own)",
               fn);
  }
  if (!co->mayWait()) luaL_error(L, "%s: cannot wait in %s", fn, co->what());
  return co;
}

struct SleepWait final : Wait {
  Coroutine* co = nullptr;
  core::TimerPtr timer;
  static void onTimer(void* ctx) {
    auto* s = static_cast<SleepWait*>(ctx);
    Coroutine* co = s->co;
    delete s;
    co->wake(0);
  }
  void cancelWait() override { delete this; }
};

// crescent.sleep(ms): suspends the hook for ms milliseconds of loop time (0: until the
// loop's next turn). Returns nothing.
int libSleep(lua_State* L) {
  lua_Number ms = luaL_checknumber(L, 1);
  if (ms < 0 || ms != ms) return luaL_error(L, "crescent.sleep: invalid delay %f ms", ms);
  Coroutine* co = waitingCoroutine(L, "crescent.sleep");
  auto* s = new SleepWait();
  s->co = co;
  s->timer = core::Timer::create(*CoroutineHost::of(L)->loop, &SleepWait::onTimer, s);
  s->timer->start(static_cast<uint64_t>(ms));
  co->suspend(*s);
  return lua_yield(L, 0);
}

struct ResolveWait final : Wait {
  uv_getaddrinfo_t req{};
  Coroutine* co = nullptr;  // null once cancelled: the callback only frees
  static void onDone(uv_getaddrinfo_t* r, int status, struct addrinfo* res) {
    auto* w = static_cast<ResolveWait*>(r->data);
    Coroutine* co = w->co;
    if (co == nullptr) {
      if (res != nullptr) uv_freeaddrinfo(res);
      delete w;
      return;
    }
    lua_State* L = co->L();
    if (status != 0) {
      lua_pushnil(L);
      lua_pushstring(L, uv_strerror(status));
    } else {
      lua_newtable(L);
      int n = 0;
      std::vector<std::string> seen;
      for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
        char text[64] = "";
        if (a->ai_family == AF_INET) {
          uv_ip4_name(reinterpret_cast<sockaddr_in*>(a->ai_addr), text, sizeof(text));
        } else if (a->ai_family == AF_INET6) {
          uv_ip6_name(reinterpret_cast<sockaddr_in6*>(a->ai_addr), text, sizeof(text));
        } else {
          continue;
        }
        bool dup = false;
        for (const auto& s : seen) dup = dup || s == text;
        if (dup) continue;
        seen.emplace_back(text);
        lua_pushstring(L, text);
        lua_rawseti(L, -2, ++n);
      }
      lua_pushnil(L);
    }
    if (res != nullptr) uv_freeaddrinfo(res);
    delete w;
    co->wake(2);
  }
  void cancelWait() override {
    co = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&req));  // the callback runs (ECANCELED) and frees
  }
};

// crescent.resolve(name) -> { "ip", ... } or nil, err: the addresses of `name` (libuv's
// getaddrinfo on its thread pool), IPv4 and IPv6, without duplicates.
int libResolve(lua_State* L) {
  std::string name(checkView(L, 1));
  Coroutine* co = waitingCoroutine(L, "crescent.resolve");
  auto* w = new ResolveWait();
  w->co = co;
  w->req.data = w;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(CoroutineHost::of(L)->loop->uv(), &w->req, &ResolveWait::onDone,
                          name.c_str(), nullptr, &hints);
  if (rc != 0) {
    delete w;
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  co->suspend(*w);
  return lua_yield(L, 0);
}

// crescent.timer.at(delay_ms, fn, ...) / crescent.timer.every(interval_ms, fn, ...)
// -> true, or nil and why (OpenResty's shape).
int timerAdd(lua_State* L, bool every) {
  lua_Number ms = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  const char* fn = every ? "crescent.timer.every" : "crescent.timer.at";
  if (ms != ms || ms < 0 || (every && ms < 1))
    return luaL_error(L, "%s: invalid delay %f ms", fn, ms);
  CoroutineHost* host = CoroutineHost::of(L);
  std::string error;
  if (host == nullptr || host->timers == nullptr ||
      !host->timers->add(L, static_cast<uint64_t>(ms), every, 2, 3, error)) {
    lua_pushnil(L);
    lua_pushstring(L, error.empty() ? "no timers in this state" : error.c_str());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

int libTimerAt(lua_State* L) {
  return timerAdd(L, false);
}

int libTimerEvery(lua_State* L) {
  return timerAdd(L, true);
}

int libTimerPending(lua_State* L) {
  CoroutineHost* host = CoroutineHost::of(L);
  lua_pushinteger(L, host != nullptr && host->timers != nullptr ? host->timers->pending() : 0);
  return 1;
}

}  // namespace

void registerWaits(lua_State* L) {
  lua_getglobal(L, "crescent");
  // guarded<> passes lua_yield()'s return value through (kRaise is not -1).
  pushGuarded<libSleep>(L);
  lua_setfield(L, -2, "sleep");
  pushGuarded<libResolve>(L);
  lua_setfield(L, -2, "resolve");
  lua_createtable(L, 0, 3);
  pushGuarded<libTimerAt>(L);
  lua_setfield(L, -2, "at");
  pushGuarded<libTimerEvery>(L);
  lua_setfield(L, -2, "every");
  pushGuarded<libTimerPending>(L);
  lua_setfield(L, -2, "pending_count");
  lua_setfield(L, -2, "timer");
  lua_pop(L, 1);
}

}  // namespace crescent::lua
