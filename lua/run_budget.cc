#include "lua/run_budget.h"

#include <lua.hpp>

#include <cstdio>

#include "core/base/running_slot.h"
#include "lua/lua_memory.h"

namespace crescent::lua {

namespace {
// Registry key (its address) of the RunBudget in force for a state.
char kBudgetKey;

RunBudget* current(lua_State* L) {
  lua_pushlightuserdata(L, &kBudgetKey);
  lua_rawget(L, LUA_REGISTRYINDEX);
  auto* b = static_cast<RunBudget*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return b;
}

void setCurrent(lua_State* L, RunBudget* b) {
  lua_pushlightuserdata(L, &kBudgetKey);
  if (b) {
    lua_pushlightuserdata(L, b);
  } else {
    lua_pushnil(L);
  }
  lua_rawset(L, LUA_REGISTRYINDEX);
}
// "file:line" of the function at `fn_index` (where it is defined) or, with 0, of the
// current line of `L`'s innermost frame (a suspended coroutine); "" when neither.
void locate(lua_State* L, int fn_index, char* out, size_t cap) {
  out[0] = '\0';
  lua_Debug ar;
  if (fn_index != 0 && lua_isfunction(L, fn_index)) {
    lua_pushvalue(L, fn_index);
    if (lua_getinfo(L, ">S", &ar) != 0 && ar.linedefined > 0)
      std::snprintf(out, cap, "%s:%d", ar.short_src, ar.linedefined);
    return;
  }
  if (lua_getstack(L, 0, &ar) != 0 && lua_getinfo(L, "Sl", &ar) != 0 && ar.currentline > 0)
    std::snprintf(out, cap, "%s:%d", ar.short_src, ar.currentline);
}

}  // namespace

RunBudget::RunBudget(lua_State* L, uint64_t budget_ms, const char* what, int fn_index)
    : RunBudget(L, budget_ms, budget_ms * 1000, what, fn_index) {}

RunBudget::RunBudget(lua_State* L, uint64_t budget_ms, uint64_t left_us, const char* what,
                     int fn_index)
    : L_(L), budget_ms_(budget_ms), what_(what) {
  slot_ = core::RunningSlot::current();
  if (slot_ != nullptr) {
    char where[192];
    locate(L, fn_index, where, sizeof(where));
    slot_->enter(what, where);
  }
  // The memory cap holds inside every guarded call, budgeted or not (lua_memory.h).
  mem_ = luaMemoryOf(L);
  if (mem_ != nullptr && mem_->enforce == 0) {
    mem_->refused = false;
    // After a refusal, or near the cap: collect first, so that garbage (what a failed
    // call left, what a script dropped) does not fail this call (LuaMemory::collect).
    bool near = mem_->limit != 0 && mem_->used > mem_->limit - mem_->limit / 4;
    if (mem_->collect || near) {
      mem_->collect = false;
      lua_gc(L, LUA_GCCOLLECT, 0);
    }
  }
  if (mem_ != nullptr) ++mem_->enforce;
  outer_ = current(L);
  if (budget_ms == 0 || outer_ != nullptr) return;  // unlimited, or an outer budget rules
  deadline_ = std::chrono::steady_clock::now() + std::chrono::microseconds(left_us);
  setCurrent(L, this);
  // The hook stays set between budgets (it returns at once when no budget is current):
  // lua_sethook makes LuaJIT rewrite its dispatch table, twice per hook call otherwise.
  if (lua_gethook(L) != &RunBudget::onCountHook || lua_gethookcount(L) != kCheckEvery)
    lua_sethook(L, &RunBudget::onCountHook, LUA_MASKCOUNT, kCheckEvery);
  armed_ = true;
}

RunBudget::~RunBudget() {
  if (mem_ != nullptr) --mem_->enforce;
  if (slot_ != nullptr) slot_->leave();
  if (!armed_) return;
  setCurrent(L_, nullptr);
}

// Runs between two VM instructions, never inside a C function. Raising here is allowed
// (lua_error from a hook unwinds to the innermost pcall).
void RunBudget::onCountHook(lua_State* L, lua_Debug* ar) {
  RunBudget* b = current(L);
  if (b == nullptr) return;
  if (b->slot_ != nullptr) {  // where the code is, for the watchdog (every kCheckEvery)
    char where[192];
    locate(L, 0, where, sizeof(where));
    b->slot_->at(where);
  }
  if (std::chrono::steady_clock::now() < b->deadline_) return;
  b->expired_ = true;
  lua_sethook(L, &RunBudget::onCountHook, LUA_MASKCOUNT, 1);
  lua_Debug here;
  if (lua_getstack(L, 0, &here) && lua_getinfo(L, "Sl", &here) && here.currentline > 0) {
    lua_pushfstring(L, "%s:%d: %s exceeded its time budget (%d ms)", here.short_src,
                    here.currentline, b->what_, static_cast<int>(b->budget_ms_));
  } else {
    lua_pushfstring(L, "%s exceeded its time budget (%d ms)", b->what_,
                    static_cast<int>(b->budget_ms_));
  }
  lua_error(L);
}

}  // namespace crescent::lua
