#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "core/base/running_slot.h"
#include "core/net/event_loop.h"

namespace crescent::core {

/// HAProxy's watchdog (`global { watchdog = "2s", on_stuck = "abort" | "log" }`): a
/// thread of the process that notices a worker whose loop has not turned
/// (EventLoop::turns) for `timeout_ms` while the worker's thread kept using CPU (its
/// thread CPU clock, read with pthread_getcpuclockid; a loop idle in epoll_wait uses
/// none): one callback that has not returned, which no time budget can cut (one C call
/// that never returns, e.g. a catastrophic `gsub`). Like HAProxy's, it is about CPU: a
/// worker blocked in a system call is not reported.
///
/// For a stuck worker it logs, once per stuck episode: the worker, how long, what it runs
/// (the worker's RunningSlot: the Lua phase and the defining `file:line` of its function,
/// recorded by the worker before it entered Lua), and the backtrace of the worker's
/// thread, written by the worker itself from a signal handler (SIGRTMIN+2, sent with
/// pthread_kill; the handler only calls backtrace() and backtrace_symbols_fd() on fd 2,
/// and backtrace() is called once at start so that its library is loaded beforehand).
/// Then, with kAbort, it aborts the process (SIGABRT), for the service manager to restart
/// it; with kLog it goes on and logs the next episode again.
///
/// The timeout counts wall-clock time, checked 4 times per timeout, over intervals in
/// which the thread used at least 5% of a CPU (an interval below that, a wait in
/// epoll_wait, ends the episode): a stuck worker on a host loaded by other work is still
/// reported.
///
/// start()/stop()/setPolicy() from the owning (main) thread. The watched loops and slots
/// must outlive stop().
class Watchdog {
 public:
  enum class OnStuck { kAbort, kLog };
  struct Watched {
    int worker_id = 0;
    const EventLoop* loop = nullptr;
    pthread_t thread{};
    const RunningSlot* slot = nullptr;
  };

  Watchdog() = default;
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  /// Starts watching `watched` (timeout_ms 0: the thread starts but reports nothing until
  /// setPolicy gives a timeout). Idempotent per instance: one start.
  void start(std::vector<Watched> watched, uint64_t timeout_ms, OnStuck on_stuck);
  /// A reload's new values: they apply from the next check.
  void setPolicy(uint64_t timeout_ms, OnStuck on_stuck);
  /// Ends the thread (joins it). Idempotent.
  void stop();
  /// Stuck episodes reported so far (tests, kLog). Thread-safe.
  uint64_t reports() const { return reports_.load(std::memory_order_relaxed); }

 private:
  void run();
  void report(const Watched& w, uint64_t stuck_ms, OnStuck on_stuck);

  std::vector<Watched> watched_;
  std::atomic<uint64_t> timeout_ms_{0};
  std::atomic<OnStuck> on_stuck_{OnStuck::kAbort};
  std::atomic<uint64_t> reports_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace crescent::core
