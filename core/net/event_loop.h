#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
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

  /// Heartbeat for a watchdog on another thread (core/runtime/watchdog.h): counts the
  /// loop's turns (bumped before and after each poll). A count that stays the same while
  /// the loop's thread burns CPU means one callback has not returned: the loop is stuck.
  /// (I/O callbacks run inside libuv's poll phase, so "between check and prepare" does not
  /// bracket them: the watchdog tells a thread idle in epoll_wait from a stuck one by its
  /// CPU time.) Thread-safe (an atomic).
  uint64_t turns() const { return turns_.load(std::memory_order_relaxed); }

  /// Closes the loop's own handles, runs the loop until every handle is closed, and
  /// returns uv_loop_close()'s result (0 when nothing leaked). Idempotent.
  int close();

 private:
  static void onIdleCb(uv_idle_t* h);
  static void onAsyncCb(uv_async_t* h);
  static void onBeatCb(uv_prepare_t* h);
  static void onBeatCb(uv_check_t* h);
  void drainDeferred();
  void runPosted();

  uv_loop_t loop_{};
  uv_idle_t idle_{};
  uv_async_t async_{};
  uv_prepare_t prepare_{};  // before poll: ++turns_
  uv_check_t check_{};      // after poll: ++turns_
  std::atomic<uint64_t> turns_{0};
  bool closed_ = false;
  std::vector<std::unique_ptr<Deletable>> deferred_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;  // guarded by mu_
  bool accepting_posts_ = true;                // guarded by mu_
};

}  // namespace crescent::core
