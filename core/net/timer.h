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

}  // namespace crescent::core
