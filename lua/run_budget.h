#pragma once

#include <chrono>
#include <cstdint>

namespace crescent::core {
class RunningSlot;
}

struct lua_State;
struct lua_Debug;

namespace crescent::lua {

struct LuaMemory;

/// Cuts off a Lua call that runs longer than a wall-clock budget (DESIGN §5: a hook
/// that runs too long is cut off).
///
/// While alive, a count hook (every kCheckEvery VM instructions) compares the clock with
/// the deadline; past it, the hook raises "<what> exceeded its time budget (N ms)" at
/// the running Lua line and re-arms itself to fire on every instruction, so a script
/// that catches the error with pcall is stopped again at its next instruction.
///
/// This only works because every crescent state runs with the JIT compiler off
/// (ScriptState::load): LuaJIT's distribution build does not check hooks inside
/// compiled traces (no LUAJIT_ENABLE_CHECKHOOK), and a trace compiled from
/// `while true do end` never returns to the interpreter, so no watchdog could stop it
/// once it is compiled — and LuaJIT compiles it even while a count hook is armed.
///
/// lua_sethook is global to the VM: one RunBudget per state at a time (nesting is
/// refused by construction: the budget in force is the outer one). Not thread-safe.
///
/// Every RunBudget (even with budget_ms == 0, or nested) also marks a guarded call for
/// the state's memory cap (lua_memory.h): allocations past global.lua.maxmem are refused
/// while one is alive.
class RunBudget {
 public:
  static constexpr int kCheckEvery = 10000;

  /// budget_ms == 0: no limit (no hook is armed). `what` must outlive this object.
  /// `fn_index`: stack index of the function about to be called (0: none, e.g. a
  /// suspended coroutine about to be resumed, whose current line is used instead): its
  /// defining `file:line` and `what` go to the thread's core::RunningSlot, which the
  /// watchdog reads when the call never returns; the count hook updates the line.
  RunBudget(lua_State* L, uint64_t budget_ms, const char* what, int fn_index = 0);
  /// A budget of which `left_us` microseconds are left (a coroutine resumed after a
  /// wait): the error still names the whole `budget_ms`.
  RunBudget(lua_State* L, uint64_t budget_ms, uint64_t left_us, const char* what, int fn_index = 0);
  ~RunBudget();
  RunBudget(const RunBudget&) = delete;
  RunBudget& operator=(const RunBudget&) = delete;

  /// True once the hook has raised the budget error.
  bool expired() const { return expired_; }

 private:
  static void onCountHook(lua_State* L, lua_Debug* ar);

  lua_State* L_;
  uint64_t budget_ms_;
  const char* what_;
  std::chrono::steady_clock::time_point deadline_;
  bool armed_ = false;
  bool expired_ = false;
  RunBudget* outer_ = nullptr;
  LuaMemory* mem_ = nullptr;
  core::RunningSlot* slot_ = nullptr;
};

}  // namespace crescent::lua
