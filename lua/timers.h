#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/net/timer.h"
#include "lua/coroutine.h"
#include "lua/script_scope.h"

struct lua_State;

namespace crescent::lua {

/// crescent.timer.at / crescent.timer.every of one Lua state (OpenResty's ngx.timer
/// contract, docs/lua-api.md): each callback runs as its own coroutine on the worker's
/// loop, as fn(premature, ...) with the arguments given, and may wait. `every` runs
/// again each interval; a tick that finds the previous run still going is skipped.
///
/// Timers asked for while the script is evaluated (before a worker binds the state to
/// its loop) start at start(); the main thread's state, which no worker binds, starts
/// none. When the generation retires (a reload installed a newer one, or the worker
/// stops) every pending timer runs once at once with premature = true and then no more;
/// no timer can be added after. At a stop those premature runs may not wait, and a
/// callback still waiting is cancelled: nothing survives the worker. At most
/// `max` timers are pending per state (OpenResty's lua_max_pending_timers).
class TimerSet {
 public:
  static constexpr size_t kDefaultMax = 1024;

  explicit TimerSet(CoroutineHost& host);
  ~TimerSet();
  TimerSet(const TimerSet&) = delete;
  TimerSet& operator=(const TimerSet&) = delete;

  /// Registers fn (at stack index `fn` of L) with the arguments at `first`..top, to run
  /// after `delay_ms` (and every `delay_ms` with `every`). Returns false with `error`
  /// (the limit, a retired generation).
  bool add(lua_State* L, uint64_t delay_ms, bool every, int fn, int first, std::string& error);
  /// The state is bound to a loop: timers start counting.
  void start();
  void retire(bool stopping);
  /// Drops every timer without running it (the state goes away).
  void stopAll();
  int pending() const { return static_cast<int>(entries_.size()); }
  void setMax(size_t max) { max_ = max; }

 private:
  struct Entry;
  void arm(Entry& e);
  void fire(Entry& e, bool premature);
  void ended(Entry& e);
  void erase(Entry& e);

  CoroutineHost& host_;
  std::map<uint64_t, std::unique_ptr<Entry>> entries_;
  uint64_t next_id_ = 1;
  size_t max_ = kDefaultMax;
  bool started_ = false;
  bool retired_ = false;
  bool stopping_ = false;
};

/// Installs crescent.sleep, crescent.resolve and crescent.timer in the state.
void registerWaits(lua_State* L);

}  // namespace crescent::lua
