#include "lua/run_budget.h"

#include <lua.hpp>

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
}  // namespace

RunBudget::RunBudget(lua_State* L, uint64_t budget_ms, const char* what)
    : L_(L), budget_ms_(budget_ms), what_(what) {
  outer_ = current(L);
  if (budget_ms == 0 || outer_ != nullptr) return;  // unlimited, or an outer budget rules
  deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(budget_ms);
  setCurrent(L, this);
  lua_sethook(L, &RunBudget::onCountHook, LUA_MASKCOUNT, kCheckEvery);
  armed_ = true;
}

RunBudget::~RunBudget() {
  if (!armed_) return;
  lua_sethook(L_, nullptr, 0, 0);
  setCurrent(L_, nullptr);
}

// Runs between two VM instructions, never inside a C function. Raising here is allowed
// (lua_error from a hook unwinds to the innermost pcall).
void RunBudget::onCountHook(lua_State* L, lua_Debug* ar) {
  RunBudget* b = current(L);
  if (b == nullptr || std::chrono::steady_clock::now() < b->deadline_) return;
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
