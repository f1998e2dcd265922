#include "core/runtime/watchdog.h"

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include <uv.h>

#include "core/base/log.h"

namespace crescent::core {

namespace {

// Set by the stuck thread's signal handler once its backtrace is written.
std::atomic<bool> g_trace_done{false};

int traceSignal() {
  return SIGRTMIN + 2;
}

void writeAll(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

// Runs on the stuck worker's thread. Only async-signal-safe calls (backtrace() is once
// its library is loaded, which Watchdog::start makes sure of).
void onTraceSignal(int) {
  int saved = errno;
  void* frames[64];
  int n = backtrace(frames, 64);
  writeAll("crescent: watchdog: backtrace of the stuck thread:\n");
  backtrace_symbols_fd(frames, n, 2);
  g_trace_done.store(true, std::memory_order_release);
  errno = saved;
}

void installTraceHandler() {
  void* warm[4];
  (void)backtrace(warm, 4);  // loads libgcc's unwinder now, not in the handler
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = &onTraceSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(traceSignal(), &sa, nullptr);
}

}  // namespace

Watchdog::~Watchdog() {
  stop();
}

void Watchdog::start(std::vector<Watched> watched, uint64_t timeout_ms, OnStuck on_stuck) {
  if (thread_.joinable()) return;
  watched_ = std::move(watched);
  setPolicy(timeout_ms, on_stuck);
  installTraceHandler();
  thread_ = std::thread([this] { run(); });
}

void Watchdog::setPolicy(uint64_t timeout_ms, OnStuck on_stuck) {
  timeout_ms_.store(timeout_ms, std::memory_order_relaxed);
  on_stuck_.store(on_stuck, std::memory_order_relaxed);
  cv_.notify_all();
}

void Watchdog::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

namespace {

uint64_t cpuNs(clockid_t clock, bool& ok) {
  timespec ts{};
  ok = clock_gettime(clock, &ts) == 0;
  return ok ? static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec)
            : 0;
}

}  // namespace

void Watchdog::run() {
  struct Track {
    clockid_t clock{};
    bool has_clock = false;
    uint64_t turns = 0, cpu_ns = 0, wall_ns = 0;
    uint64_t stuck_ns = 0;  // wall time without a turn while the thread used CPU
    bool reported = false;  // this episode (until the loop turns again)
  };
  std::vector<Track> track(watched_.size());
  for (size_t i = 0; i < watched_.size(); ++i) {
    Track& t = track[i];
    t.has_clock = pthread_getcpuclockid(watched_[i].thread, &t.clock) == 0;
    t.turns = watched_[i].loop->turns();
    bool ok = false;
    if (t.has_clock) t.cpu_ns = cpuNs(t.clock, ok);
    t.wall_ns = uv_hrtime();
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    uint64_t timeout = timeout_ms_.load(std::memory_order_relaxed);
    // Checks 4 times per timeout: a stuck loop is reported between 1 and 1.25 timeouts
    // after it stopped turning.
    uint64_t every = timeout == 0 ? 1000 : std::max<uint64_t>(timeout / 4, 10);
    cv_.wait_for(lock, std::chrono::milliseconds(every));
    if (stopping_) break;
    for (size_t i = 0; i < watched_.size(); ++i) {
      Track& t = track[i];
      uint64_t turns = watched_[i].loop->turns();
      uint64_t wall = uv_hrtime();
      bool ok = false;
      uint64_t cpu = t.has_clock ? cpuNs(t.clock, ok) : 0;
      uint64_t d_wall = wall - t.wall_ns;
      uint64_t d_cpu = ok && cpu >= t.cpu_ns ? cpu - t.cpu_ns : 0;
      if (turns != t.turns) {
        t.stuck_ns = 0;
        t.reported = false;
      } else if (ok && d_cpu * 20 >= d_wall) {
        // No turn, and the thread ran (5% of a CPU at least: a thread waiting in
        // epoll_wait uses none, and a host overloaded by other work still gives a stuck
        // thread more than that): stuck in a callback.
        t.stuck_ns += d_wall;
      } else {
        t.stuck_ns = 0;  // waiting in poll (idle): no CPU
      }
      t.turns = turns;
      t.wall_ns = wall;
      if (ok) t.cpu_ns = cpu;
      if (timeout == 0 || t.reported || t.stuck_ns / 1000000 < timeout) continue;
      t.reported = true;
      lock.unlock();
      report(watched_[i], t.stuck_ns / 1000000, on_stuck_.load(std::memory_order_relaxed));
      lock.lock();
    }
  }
}

void Watchdog::report(const Watched& w, uint64_t stuck_ms, OnStuck on_stuck) {
  std::string running = w.slot != nullptr ? w.slot->describe() : std::string();
  logError("watchdog: worker {} is stuck: its loop has not turned for {} ms; running {}",
           w.worker_id, stuck_ms, running.empty() ? "no Lua hook (C++ code)" : running);
  g_trace_done.store(false, std::memory_order_relaxed);
  if (pthread_kill(w.thread, traceSignal()) == 0) {
    // The handler runs as soon as the kernel schedules the thread: wait for it (bounded).
    for (int i = 0; i < 200 && !g_trace_done.load(std::memory_order_acquire); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (on_stuck == OnStuck::kAbort) {
    logError("watchdog: aborting the process (on_stuck = \"abort\"): worker {} is stuck",
             w.worker_id);
    std::abort();
  }
  logWarning("watchdog: worker {} left running (on_stuck = \"log\")", w.worker_id);
  reports_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace crescent::core
