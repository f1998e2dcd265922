#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>

#include "core/net/event_loop.h"

namespace crescent::core {

/// A one-shot libuv timer calling a plain function with a context pointer.
/// Owned through TimerPtr, whose deleter close()s it; the object frees itself in its close
/// callback. After close() the callback never runs.
class Timer {
 public:
  using Callback = void (*)(void* ctx);
  struct Closer {
    void operator()(Timer* t) const { t->close(); }
  };

  static std::unique_ptr<Timer, Closer> create(EventLoop& loop, Callback cb, void* ctx);

  /// (Re)arms the timer to fire once after `ms` milliseconds (loop time).
  void start(uint64_t ms);
  void stop();
  bool active() const { return uv_is_active(reinterpret_cast<const uv_handle_t*>(&h_)) != 0; }
  /// Loop time at which the armed timer fires (valid while active()).
  uint64_t due() const { return due_; }
  void close();

 private:
  Timer(EventLoop& loop, Callback cb, void* ctx);
  ~Timer() = default;
  static void onTimerCb(uv_timer_t* h);
  static void onCloseCb(uv_handle_t* h);

  uv_timer_t h_{};
  EventLoop& loop_;
  Callback cb_;
  void* ctx_;
  uint64_t due_ = 0;
  bool closing_ = false;
};

using TimerPtr = std::unique_ptr<Timer, Timer::Closer>;

/// The earliest of several inactivity deadlines, for re-arming one timer lazily: traffic
/// only records a timestamp, and the timer, when it fires early, re-arms for what is
/// left. Times in ms of loop time; a timeout of 0 means none.
class NextDeadline {
 public:
  explicit NextDeadline(uint64_t now) : now_(now) {}
  /// Considers a side last active at `last` with inactivity timeout `timeout`.
  void consider(uint64_t last, uint64_t timeout) {
    if (timeout == 0) return;
    uint64_t idle = now_ > last ? now_ - last : 0;
    uint64_t left = idle >= timeout ? 1 : timeout - idle;
    if (next_ == 0 || left < next_) next_ = left;
  }
  /// Milliseconds until the earliest deadline; 0 when no timeout applies.
  uint64_t ms() const { return next_; }

 private:
  uint64_t now_;
  uint64_t next_ = 0;
};

}  // namespace crescent::core
