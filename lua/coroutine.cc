#include "lua/coroutine.h"

#include <lua.hpp>

#include <chrono>

#include "lua/lua_memory.h"
#include "lua/lua_util.h"
#include "lua/run_budget.h"

namespace crescent::lua {
namespace {

char kHostKey;  // registry key (its address): the state's CoroutineHost

constexpr size_t kMaxIdleThreads = 64;

uint64_t nowUs() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count());
}

}  // namespace

void CoroutineHost::install() {
  lua_pushlightuserdata(L, &kHostKey);
  lua_pushlightuserdata(L, this);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

CoroutineHost* CoroutineHost::of(lua_State* L) {
  lua_pushlightuserdata(L, &kHostKey);
  lua_rawget(L, LUA_REGISTRYINDEX);
  auto* h = static_cast<CoroutineHost*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return h;
}

Coroutine::Coroutine(CoroutineHost& host, const char* what, bool may_wait, Owner* owner)
    : host_(host), what_(what), may_wait_(may_wait), owner_(owner) {
  if (!host_.idle.empty()) {
    ref_ = host_.idle.back();
    host_.idle.pop_back();
    lua_rawgeti(host_.L, LUA_REGISTRYINDEX, ref_);
    co_ = lua_tothread(host_.L, -1);
    lua_pop(host_.L, 1);
  } else {
    co_ = lua_newthread(host_.L);
    ref_ = luaL_ref(host_.L, LUA_REGISTRYINDEX);
  }
  ++host_.live;
}

Coroutine::~Coroutine() {
  if (state_ == State::kWaiting) cancel();
  release(state_ == State::kDone || state_ == State::kIdle);
}

// Gives the thread back: to the idle list when it ended cleanly (its stack emptied),
// else to the collector.
void Coroutine::release(bool reusable) {
  if (ref_ < 0) return;
  if (reusable && host_.idle.size() < kMaxIdleThreads && lua_status(co_) == 0) {
    lua_settop(co_, 0);
    host_.idle.push_back(ref_);
  } else {
    luaL_unref(host_.L, LUA_REGISTRYINDEX, ref_);
  }
  ref_ = -1;
  co_ = nullptr;
  --host_.live;
}

Coroutine* Coroutine::running(lua_State* L) {
  CoroutineHost* h = CoroutineHost::of(L);
  if (h == nullptr || h->running == nullptr || h->running->co_ != L) return nullptr;
  return h->running;
}

Coroutine::State Coroutine::run(int nargs) {
  return resume(nargs);
}

void Coroutine::suspend(Wait& w) {
  wait_ = &w;
}

void Coroutine::wake(int nresults) {
  if (state_ != State::kWaiting) return;
  wait_ = nullptr;
  --host_.waiting;
  State s = resume(nresults);
  if (s != State::kWaiting && owner_ != nullptr) owner_->onCoroutineEnd(*this);  // last
}

void Coroutine::cancel() {
  if (state_ != State::kWaiting) return;
  if (wait_ != nullptr) wait_->cancelWait();
  wait_ = nullptr;
  --host_.waiting;
  state_ = State::kFailed;
  error_ = std::string(what_) + ": cancelled";
  release(false);
}

// One resume with what is left of the budget. The function ran to its end (kDone),
// raised (kFailed), or waits on a Wait it registered (kWaiting). A yield without a Wait
// (coroutine.yield() in the hook itself) has nobody to resume it: an error.
Coroutine::State Coroutine::resume(int nargs) {
  state_ = State::kRunning;
  Coroutine* outer = host_.running;
  host_.running = this;
  uint64_t t0 = nowUs();
  int rc;
  {
    uint64_t total_us = host_.budget_ms * 1000;
    uint64_t left_us = total_us > spent_us_ ? total_us - spent_us_ : 1;
    // A fresh coroutine has its function below the arguments; a suspended one has frames.
    int fn = lua_status(co_) == 0 && lua_gettop(co_) > nargs ? lua_gettop(co_) - nargs : 0;
    RunBudget budget(co_, host_.budget_ms, left_us, what_, fn);
    rc = lua_resume(co_, nargs);
  }
  uint64_t took = nowUs() - t0;
  spent_us_ += took;
  host_.run_us += took;
  host_.running = outer;
  if (rc == LUA_YIELD) {
    if (wait_ != nullptr) {
      state_ = State::kWaiting;
      ++host_.waiting;
      return state_;
    }
    state_ = State::kFailed;
    error_ = std::string(what_) +
             ": coroutine.yield() outside a coroutine of the script's own (nothing would "
             "resume it)";
    release(false);
    return state_;
  }
  if (rc == 0) {
    state_ = State::kDone;
    results_ = lua_gettop(co_);
    return state_;
  }
  state_ = State::kFailed;
  std::string msg = explainMemoryError(co_, describeError(co_, -1));
  if (msg.empty()) msg = "Lua error";
  msg = fixLocation(std::move(msg), scriptPath(co_));
  // The dead coroutine's frames are still there to walk: the traceback of the error.
  luaL_traceback(host_.L, co_, msg.c_str(), 0);
  error_ = lua_tostring(host_.L, -1);
  lua_pop(host_.L, 1);
  release(false);
  return state_;
}

}  // namespace crescent::lua
