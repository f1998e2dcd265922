// Coroutines on a worker's loop and crescent.timer (lua/coroutine.h, lua/timers.h): a hook
// that waits is suspended and resumed from the loop, the time budget counts running time
// and not waiting, a cancelled wait leaves nothing behind, finished threads are reused,
// and timers keep OpenResty's contract (premature runs at retirement, a pending limit).
#include <gtest/gtest.h>

#include <lua.hpp>

#include <functional>
#include <memory>
#include <string>

#include "core/net/event_loop.h"
#include "lua/coroutine.h"
#include "lua/timers.h"

namespace crescent::lua {
namespace {

// A bare Lua state with crescent.sleep and crescent.timer, bound to a loop.
class Waits : public ::testing::Test, public Coroutine::Owner {
 protected:
  void SetUp() override {
    L = luaL_newstate();
    luaL_openlibs(L);
    // As ScriptState does: the budget's count hook is not checked inside compiled code.
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_newtable(L);
    lua_setglobal(L, "crescent");
    host.L = L;
    host.loop = &loop;
    host.install();
    timers = std::make_unique<TimerSet>(host);
    host.timers = timers.get();
    registerWaits(L);
    timers->start();
  }
  void TearDown() override {
    timers.reset();
    lua_close(L);
    // Nothing was left on the loop: no timer, no handle.
    for (int i = 0; i < 10; ++i) uv_run(loop.uv(), UV_RUN_NOWAIT);
    EXPECT_EQ(loop.close(), 0);
  }

  // Runs `code` (a chunk returning a function) in a new coroutine with `args` strings.
  std::unique_ptr<Coroutine> start(const std::string& code, bool may_wait = true) {
    auto co = std::make_unique<Coroutine>(host, "test hook", may_wait, this);
    EXPECT_EQ(luaL_loadstring(co->L(), code.c_str()), 0) << lua_tostring(co->L(), -1);
    EXPECT_EQ(lua_pcall(co->L(), 0, 1, 0), 0) << lua_tostring(co->L(), -1);
    last = co->run(0);
    return co;
  }

  // Turns the loop (blocking for the next event) until `done` or 1,000 turns.
  bool runUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 1000 && !done(); ++i) uv_run(loop.uv(), UV_RUN_ONCE);
    return done();
  }

  void onCoroutineEnd(Coroutine& co) override {
    ++ended;
    end_state = co.state();
    if (co.state() == Coroutine::State::kDone && co.results() > 0)
      result = lua_tostring(co.L(), 1) != nullptr ? lua_tostring(co.L(), 1) : "";
    if (co.state() == Coroutine::State::kFailed) result = co.error();
  }

  std::string global(const char* name) {
    lua_getglobal(L, name);
    std::string s = lua_isnil(L, -1) ? "nil" : lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
  }

  core::EventLoop loop;
  lua_State* L = nullptr;
  CoroutineHost host;
  std::unique_ptr<TimerSet> timers;
  Coroutine::State last = Coroutine::State::kIdle;
  int ended = 0;
  Coroutine::State end_state = Coroutine::State::kIdle;
  std::string result;
};

TEST_F(Waits, ASleepSuspendsAndTheLoopResumes) {
  auto co = start(R"(return function()
    crescent.sleep(5)
    crescent.sleep(0)
    return "woke twice"
  end)");
  ASSERT_EQ(last, Coroutine::State::kWaiting);
  EXPECT_EQ(host.waiting, 1);
  EXPECT_EQ(ended, 0) << "reported before the loop resumed it";
  ASSERT_TRUE(runUntil([&] { return ended == 1; }));
  EXPECT_EQ(end_state, Coroutine::State::kDone);
  EXPECT_EQ(result, "woke twice");
  EXPECT_EQ(host.waiting, 0);
}

// The budget is Lua running time between waits: a 300 ms sleep under a 100 ms budget is
// not an overrun, while a loop that never waits is cut.
TEST_F(Waits, TheBudgetCountsRunningNotWaiting) {
  host.budget_ms = 100;
  auto co = start("return function() crescent.sleep(300) return 'slept' end");
  ASSERT_EQ(last, Coroutine::State::kWaiting);
  ASSERT_TRUE(runUntil([&] { return ended == 1; }));
  EXPECT_EQ(end_state, Coroutine::State::kDone) << result;
  EXPECT_EQ(result, "slept");

  auto spin = start("return function() while true do end end");
  ASSERT_EQ(last, Coroutine::State::kFailed);
  EXPECT_NE(spin->error().find("test hook"), std::string::npos) << spin->error();
}

// Destroying a coroutine that waits cancels its wait: its timer is gone (TearDown checks
// the loop has no handle left), nothing is reported, the counts go back.
TEST_F(Waits, CancellingAWaitLeavesNothingBehind) {
  auto co = start("return function() crescent.sleep(60000) end");
  ASSERT_EQ(last, Coroutine::State::kWaiting);
  EXPECT_EQ(host.live, 1);
  co.reset();
  EXPECT_EQ(host.live, 0);
  EXPECT_EQ(host.waiting, 0);
  for (int i = 0; i < 5; ++i) uv_run(loop.uv(), UV_RUN_NOWAIT);
  EXPECT_EQ(ended, 0);
}

// An error after a wake ends the coroutine as failed, with the message and a traceback.
TEST_F(Waits, AnErrorAfterAWaitIsReportedWithItsTraceback) {
  auto co = start("return function() crescent.sleep(1) error('after the wait') end");
  ASSERT_TRUE(runUntil([&] { return ended == 1; }));
  EXPECT_EQ(end_state, Coroutine::State::kFailed);
  EXPECT_NE(result.find("after the wait"), std::string::npos) << result;
  EXPECT_NE(result.find("traceback"), std::string::npos) << result;
}

TEST_F(Waits, AFinishedThreadIsReused) {
  { auto co = start("return function() return 1 end"); }
  ASSERT_EQ(last, Coroutine::State::kDone);
  ASSERT_EQ(host.idle.size(), 1u);
  int ref = host.idle.back();
  auto co = start("return function() crescent.sleep(1) end");
  EXPECT_TRUE(host.idle.empty()) << "the idle thread was not taken";
  ASSERT_TRUE(runUntil([&] { return ended == 1; }));
  co.reset();
  ASSERT_EQ(host.idle.size(), 1u);
  EXPECT_EQ(host.idle.back(), ref);
}

TEST_F(Waits, APhaseThatMayNotWaitGetsAClearError) {
  auto co = start("return function() crescent.sleep(1) end", /*may_wait=*/false);
  ASSERT_EQ(last, Coroutine::State::kFailed);
  EXPECT_NE(co->error().find("crescent.sleep: cannot wait in test hook"), std::string::npos)
      << co->error();
}

TEST_F(Waits, TimerAtRunsOnceWithItsArguments) {
  auto co = start(R"(return function()
    return tostring(crescent.timer.at(1, function(premature, a, b)
      fired = tostring(premature) .. " " .. a .. " " .. b
    end, "x", "y"))
  end)");
  ASSERT_EQ(last, Coroutine::State::kDone);
  EXPECT_EQ(timers->pending(), 1);
  ASSERT_TRUE(runUntil([&] { return timers->pending() == 0; }));
  EXPECT_EQ(global("fired"), "false x y");
}

// A retiring generation runs each pending timer once, premature, and takes no new one.
TEST_F(Waits, RetiringRunsPendingTimersOncePremature) {
  auto co = start(R"(return function()
    runs, premature = 0, "none"
    crescent.timer.every(1, function(p)
      runs = runs + 1
      if p then premature = "yes" end
    end)
    crescent.timer.at(60000, function(p) late = tostring(p) end)
  end)");
  ASSERT_EQ(last, Coroutine::State::kDone);
  ASSERT_TRUE(runUntil([&] { return std::stoi(global("runs")) >= 3; }));
  timers->retire(/*stopping=*/false);
  EXPECT_EQ(global("premature"), "yes");
  EXPECT_EQ(global("late"), "true");
  EXPECT_EQ(timers->pending(), 0);
  std::string runs = global("runs");
  for (int i = 0; i < 5; ++i) uv_run(loop.uv(), UV_RUN_NOWAIT);
  EXPECT_EQ(global("runs"), runs) << "an `every` timer ran after retirement";
  auto again = start(R"(return function()
    local ok, err = crescent.timer.at(1, function() end)
    return tostring(ok) .. " " .. err
  end)");
  EXPECT_EQ(lua_tostring(again->L(), 1),
            std::string("nil this configuration is retired (reloaded or stopping): no new timer"));
}

TEST_F(Waits, PendingTimersAreLimited) {
  timers->setMax(2);
  auto co = start(R"(return function()
    local f = function() end
    assert(crescent.timer.at(60000, f))
    assert(crescent.timer.at(60000, f))
    local ok, err = crescent.timer.at(60000, f)
    return tostring(ok) .. " " .. err
  end)");
  ASSERT_EQ(last, Coroutine::State::kDone) << co->error();
  EXPECT_EQ(lua_tostring(co->L(), 1),
            std::string("nil too many pending timers (2, global.lua.max_timers)"));
  timers->stopAll();
  EXPECT_EQ(timers->pending(), 0);
}

}  // namespace
}  // namespace crescent::lua
