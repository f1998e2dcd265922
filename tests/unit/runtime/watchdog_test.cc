// The watchdog (core/runtime/watchdog.h): a loop whose callback burns CPU without
// returning is reported once per episode; a loop idle in poll is not; RunningSlot says
// what the thread runs.

#include <gtest/gtest.h>

#include <pthread.h>

#include <chrono>
#include <thread>

#include "core/base/running_slot.h"
#include "core/net/event_loop.h"
#include "core/runtime/watchdog.h"

namespace crescent::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

TEST(RunningSlot, OutermostCallIsDescribedUntilItEnds) {
  RunningSlot slot;
  EXPECT_EQ(slot.describe(), "");
  slot.enter("http_request hook", "cfg.lua:11");
  EXPECT_EQ(slot.describe(), "http_request hook (function defined at cfg.lua:11)");
  slot.enter("balancer pick", "cfg.lua:40");  // nested: the outer record stays
  slot.at("cfg.lua:14");
  EXPECT_EQ(slot.describe(),
            "http_request hook (function defined at cfg.lua:11, last seen at cfg.lua:14)");
  slot.leave();
  EXPECT_NE(slot.describe(), "");
  slot.leave();
  EXPECT_EQ(slot.describe(), "");
  slot.leave();  // unbalanced: harmless
  EXPECT_EQ(slot.describe(), "");
}

// Runs a loop on its own thread with one timer firing after `after_ms` whose callback
// spins (burns CPU) for `spin_ms`, or does nothing with spin_ms == 0.
struct LoopThread {
  EventLoop loop;
  uv_timer_t timer{};
  uint64_t spin_ms;
  std::thread thread;
  pthread_t handle{};

  LoopThread(uint64_t after_ms, uint64_t spin) : spin_ms(spin) {
    uv_timer_init(loop.uv(), &timer);
    timer.data = this;
    uv_timer_start(
        &timer,
        [](uv_timer_t* t) {
          auto* self = static_cast<LoopThread*>(t->data);
          auto end = steady_clock::now() + milliseconds(self->spin_ms);
          volatile uint64_t x = 0;
          while (steady_clock::now() < end) x = x + 1;
          uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
        },
        after_ms, 0);
    thread = std::thread([this] { loop.run(); });
    handle = thread.native_handle();
  }
  ~LoopThread() {
    if (thread.joinable()) thread.join();
    EXPECT_EQ(loop.close(), 0);
  }
};

TEST(Watchdog, ReportsALoopStuckInACallback) {
  LoopThread lt(50, 900);
  Watchdog wd;
  wd.start({{1, &lt.loop, lt.handle, nullptr}}, 200, Watchdog::OnStuck::kLog);
  lt.thread.join();
  wd.stop();
  EXPECT_EQ(wd.reports(), 1u);  // once per episode, not once per check
}

TEST(Watchdog, AnIdleLoopIsNotStuck) {
  LoopThread lt(700, 0);  // waits in poll for 700 ms: no turn, but no CPU either
  Watchdog wd;
  wd.start({{1, &lt.loop, lt.handle, nullptr}}, 200, Watchdog::OnStuck::kLog);
  lt.thread.join();
  wd.stop();
  EXPECT_EQ(wd.reports(), 0u);
}

TEST(Watchdog, ZeroTimeoutIsOff) {
  LoopThread lt(20, 500);
  Watchdog wd;
  wd.start({{1, &lt.loop, lt.handle, nullptr}}, 0, Watchdog::OnStuck::kLog);
  lt.thread.join();
  wd.stop();
  EXPECT_EQ(wd.reports(), 0u);
}

TEST(EventLoop, TurnsCountLoopIterations) {
  EventLoop loop;
  uint64_t before = loop.turns();
  uv_timer_t t{};
  uv_timer_init(loop.uv(), &t);
  uv_timer_start(
      &t, [](uv_timer_t* h) { uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr); }, 1, 0);
  loop.run();
  EXPECT_GT(loop.turns(), before);
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace crescent::core
