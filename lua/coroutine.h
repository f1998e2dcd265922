#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/net/event_loop.h"

struct lua_State;

namespace crescent::lua {

class Coroutine;
class ScriptScope;
class TimerSet;
class SocketPool;

/// Something a suspended coroutine waits for (a timer, a socket operation, a name
/// lookup). Implemented by the operation, which wakes the coroutine (Coroutine::wake)
/// when it is over; the coroutine holds it without owning it.
class Wait {
 public:
  /// The coroutine is going away (cancelled): stop, and never wake it.
  virtual void cancelWait() = 0;

 protected:
  ~Wait() = default;
};

/// What every coroutine of one Lua state shares (HookRunner owns it): the state, the
/// worker's loop, the time budget, the idle threads, and which coroutine runs now.
struct CoroutineHost {
  lua_State* L = nullptr;           ///< the state's main thread
  core::EventLoop* loop = nullptr;  ///< the worker's loop; null until bound (main thread)
  uint64_t budget_ms = 0;           ///< Lua running time allowed per phase; 0 = unlimited
  Coroutine* running = nullptr;     ///< the coroutine being resumed now, or null
  std::vector<int> idle;            ///< registry refs of finished threads, for reuse
  int live = 0;                     ///< coroutines in existence (started, not ended)
  int waiting = 0;                  ///< of those, suspended on a Wait
  uint64_t run_us = 0;              ///< Lua running time in coroutines, all phases
  TimerSet* timers = nullptr;       ///< the state's crescent.timer (ScriptState owns it)
  SocketPool* sockets = nullptr;    ///< the state's keepalive pool (ScriptState owns it)

  /// Registers `this` in the state's registry so that running() finds it. Once.
  void install();
  /// The host of `L`'s state, or null.
  static CoroutineHost* of(lua_State* L);
};

/// One hook (or timer callback) running as a Lua coroutine on a worker (DESIGN §5: hooks
/// that wait run as coroutines resumed by the loop). The caller pushes the function and
/// its arguments on L(), then run()s it. A C function that waits calls suspend() with
/// its Wait and returns lua_yield(L, 0); the Wait later pushes its results on L() and
/// calls wake(), which resumes the coroutine from the loop.
///
/// The time budget counts Lua running time between waits (each resume gets what is
/// left), not time spent waiting: the count hook (RunBudget) is armed per resume. An
/// error (or the budget) ends the coroutine with error() holding the message and the
/// Lua traceback. Threads that finished cleanly are reused.
///
/// Lifetime: owned by whoever runs the phase. Destroying a coroutine that waits cancels
/// its Wait (Wait::cancelWait) and drops the thread; nothing is reported. Worker thread
/// only (or, for a coroutine that never waits, whichever thread owns the state).
class Coroutine {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    /// A coroutine that had suspended ended (done or failed). Called from the loop, as
    /// the last thing the coroutine does: the owner may destroy it from inside.
    virtual void onCoroutineEnd(Coroutine& co) = 0;
  };

  enum class State { kIdle, kRunning, kWaiting, kDone, kFailed };

  /// `what` names the phase in errors ("http_request hook"); must outlive the coroutine.
  /// `may_wait`: whether the code may wait (the log phase and callers without a loop may
  /// not: a wait there is an error "cannot wait in <what>").
  Coroutine(CoroutineHost& host, const char* what, bool may_wait, Owner* owner = nullptr);
  ~Coroutine();
  Coroutine(const Coroutine&) = delete;
  Coroutine& operator=(const Coroutine&) = delete;

  /// The thread: push the function and its `nargs` arguments here before run().
  lua_State* L() const { return co_; }
  /// Starts the function. kDone: its results are on L() (results()); kFailed: error();
  /// kWaiting: Owner::onCoroutineEnd() follows.
  State run(int nargs);
  State state() const { return state_; }
  /// Values the function returned, on L() from index 1 (after kDone).
  int results() const { return results_; }
  /// Message and traceback after kFailed.
  const std::string& error() const { return error_; }
  const char* what() const { return what_; }
  bool mayWait() const { return may_wait_ && host_.loop != nullptr; }
  /// Resources (sockets) of the phase this coroutine runs for; may be null.
  ScriptScope* scope() const { return scope_; }
  void setScope(ScriptScope* s) { scope_ = s; }

  /// From a C function running on L() that is about to `return lua_yield(L, 0)`.
  void suspend(Wait& w);
  /// From `w`'s completion, on the loop: `nresults` values are on L(); resumes now.
  void wake(int nresults);
  /// Drops a coroutine that waits (its Wait is cancelled). No report follows.
  void cancel();

  /// The coroutine whose code runs on `L` now (a C function's caller), or null when `L`
  /// is not the running coroutine's thread (the main thread, a coroutine of the script's
  /// own, no coroutine at all).
  static Coroutine* running(lua_State* L);

 private:
  State resume(int nargs);
  void release(bool reusable);

  CoroutineHost& host_;
  const char* what_;
  bool may_wait_;
  Owner* owner_;
  ScriptScope* scope_ = nullptr;
  lua_State* co_ = nullptr;
  int ref_ = -1;  // registry ref anchoring co_
  State state_ = State::kIdle;
  Wait* wait_ = nullptr;
  uint64_t spent_us_ = 0;  // Lua running time so far
  int results_ = 0;
  std::string error_;
};

}  // namespace crescent::lua
