#pragma once

#include <mutex>
#include <string>
#include <string_view>

namespace crescent::core {

/// What a thread is running, recorded by the thread itself so that another thread (the
/// watchdog, core/runtime/watchdog.h) can say what a stuck worker was doing. Reading a
/// Lua state from another thread is not safe (lua_getstack / lua_Debug walk structures
/// the running thread mutates), so the Lua side records, before each call into Lua, the
/// phase's name and the defining `file:line` of the function it calls, and, from its
/// count hook (every 10,000 VM instructions), the line it has reached.
///
/// Thread-safe: every member takes a small mutex (held for a copy of a few hundred
/// bytes, never across a call). Strings are copied, truncated to fixed buffers: no
/// allocation on the data path.
class RunningSlot {
 public:
  /// A call into Lua starts; nested calls (depth > 1) keep the outermost record.
  void enter(std::string_view what, std::string_view defined_at);
  /// The Lua code reached `at` ("file:line").
  void at(std::string_view at);
  /// The call that enter() announced ended.
  void leave();
  /// "http_request hook (function defined at cfg.lua:11, last seen at cfg.lua:14)", or
  /// "" when no Lua call is on the thread's stack.
  std::string describe() const;

  /// The slot of the calling thread (set by its owner, e.g. a worker), or nullptr.
  static RunningSlot* current();
  static void setCurrent(RunningSlot* slot);

 private:
  static void copy(char* dst, size_t cap, std::string_view src);

  mutable std::mutex mu_;
  int depth_ = 0;
  char what_[64] = {};
  char defined_[192] = {};
  char at_[192] = {};
};

}  // namespace crescent::core
