#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace crescent::core {

/// Anything the loop may delete later (deferred delete, DESIGN §2).
class Deletable {
 public:
  virtual ~Deletable() = default;
};

/// One libuv loop with the two services every owner of handles needs:
/// - deferred delete: an object that must die while one of its callbacks is on the
///   stack is handed to deferDelete() and destroyed at the start of the next loop turn;
/// - post(): the only cross-thread entry point, a mutex-protected task queue woken by a
///   uv_async_t; tasks run on the loop's thread in posting order.
/// The loop is owned by the thread that runs it; everything but post() is loop-thread-only.
class EventLoop {
 public:
  EventLoop();
  ~EventLoop();  // calls close() if the owner did not
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  uv_loop_t* uv() { return &loop_; }
  /// Cached loop time in ms (uv_now): cheap, updated once per loop iteration.
  uint64_t now() const { return uv_now(const_cast<uv_loop_t*>(&loop_)); }

  /// Takes ownership; the object is destroyed on the next loop turn.
  void deferDelete(std::unique_ptr<Deletable> obj);

  /// Runs `task` on this loop's thread. Thread-safe; may be called from any thread,
  /// including the loop's own (then it runs on a later turn). Tasks posted after close()
  /// are dropped.
  void post(std::function<void()> task);

  /// Runs until no active handle is left (UV_RUN_DEFAULT).
  void run();

  /// While on, the loop's own post() handle counts as active: run() does not return for
  /// want of other handles (a worker whose listeners are paused and that has no session
  /// still waits for the task that resumes it). Off by default. Loop thread only.
  void keepAlive(bool on);

  /// Closes the loop's own handles, runs the loop until every handle is closed, and
  /// returns uv_loop_close()'s result (0 when nothing leaked). Idempotent.
  int close();

 private:
  static void onIdleCb(uv_idle_t* h);
  static void onAsyncCb(uv_async_t* h);
  void drainDeferred();
  void runPosted();

  uv_loop_t loop_{};
  uv_idle_t idle_{};
  uv_async_t async_{};
  bool closed_ = false;
  std::vector<std::unique_ptr<Deletable>> deferred_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;  // guarded by mu_
  bool accepting_posts_ = true;                // guarded by mu_
};

}  // namespace crescent::core
