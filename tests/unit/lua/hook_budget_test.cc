// The runaway guard (lua/run_budget.h): hooks and services that never return are cut
// off after their budget, whatever they do, and the state stays usable.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "lua/hook_runner.h"
#include "tests/unit/lua/lua_test_util.h"

namespace crescent::lua {
namespace {

using core::HookDecision;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr uint64_t kBudgetMs = 100;

// Each hook is selected by the request path; line numbers below are this script's.
const char* kScript = R"(-- line 1
local function spin(n) local i = 0 while i < n do i = i + 1 end return i end
for _ = 1, 200 do spin(1000) end   -- hot at load time (would be compiled with the JIT on)
backend "svc" {
  service = function(applet)
    if applet.path == "/loop" then while true do end end
    applet:send("ok")
  end,
}
frontend "f" {
  bind { ":1" },
  http_request = function(txn)
    local p = txn.req.path
    if p == "/loop" then
      while true do end
    elseif p == "/pcall" then
      while true do pcall(function() while true do end end) end
    elseif p == "/coroutine" then
      coroutine.wrap(function() while true do end end)()
    elseif p == "/warm" then
      spin(math.huge)
    elseif p == "/finite" then
      spin(100000)
    elseif p == "/jit" then
      txn:reply(200, tostring(jit.status()))
    end
  end,
  default_backend = "svc",
}
)";

struct Runner {
  testing::TempDir dir;
  std::string path;
  std::shared_ptr<core::Config> config;
  std::unique_ptr<HookRunner> runner;

  explicit Runner(uint64_t budget_ms) {
    path = dir.write("cfg.lua", kScript);
    auto st = ScriptState::load(path);
    EXPECT_TRUE(st.ok()) << st.message();
    if (!st.ok()) return;
    auto cfg = (*st)->buildConfig();
    EXPECT_TRUE(cfg.ok()) << cfg.message();
    config = *cfg;
    runner = std::make_unique<HookRunner>(std::move(*st), budget_ms);
  }

  HookDecision request(const char* target, std::chrono::milliseconds* took = nullptr) {
    core::HttpHead req;
    req.method = "GET";
    req.target = target;
    core::Address a = *core::Address::parse("127.0.0.1:1");
    core::RequestContext ctx{req, a, a, "f"};
    auto t0 = std::chrono::steady_clock::now();
    HookDecision d = runner->runHttpRequest(config->frontends[0].http_request_hook, ctx);
    if (took) {
      *took = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - t0);
    }
    return d;
  }

  core::ServiceResponse service(const char* target) {
    core::HttpHead req;
    req.method = "GET";
    req.target = target;
    core::Address a = *core::Address::parse("127.0.0.1:1");
    core::RequestContext ctx{req, a, a, "f"};
    return runner->runService(config->backends[0].service_hook, ctx, "");
  }
};

TEST(HookBudget, InfiniteLoopInAHookIsCutOff) {
  Runner r(kBudgetMs);
  ASSERT_TRUE(r.runner);
  std::chrono::milliseconds took{};
  HookDecision d = r.request("/loop", &took);
  ASSERT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_THAT(d.error,
              StartsWith(r.path + ":15: http_request hook exceeded its time budget (100 ms)\n"
                                  "stack traceback:"));
  EXPECT_GE(took.count(), 100);
  EXPECT_LT(took.count(), 5000);
  // The state is usable afterwards, and the guard is disarmed between calls.
  EXPECT_EQ(r.request("/other").kind, HookDecision::Kind::kContinue);
  EXPECT_EQ(r.request("/finite").kind, HookDecision::Kind::kContinue);
  EXPECT_EQ(r.request("/loop").kind, HookDecision::Kind::kFail);
}

TEST(HookBudget, InfiniteLoopInAServiceIsCutOff) {
  Runner r(kBudgetMs);
  ASSERT_TRUE(r.runner);
  core::ServiceResponse resp = r.service("/loop");
  EXPECT_FALSE(resp.ok);
  EXPECT_EQ(resp.status, 500);
  EXPECT_THAT(resp.error, StartsWith(r.path + ":6: service exceeded its time budget (100 ms)"));
  resp = r.service("/");
  EXPECT_TRUE(resp.ok) << resp.error;
  EXPECT_EQ(resp.body.view(), "ok");
}

TEST(HookBudget, PcallDoesNotSwallowTheCutOff) {
  Runner r(kBudgetMs);
  ASSERT_TRUE(r.runner);
  HookDecision d = r.request("/pcall");
  ASSERT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_THAT(d.error, HasSubstr("hook exceeded its time budget (100 ms)"));
}

TEST(HookBudget, LoopsInCoroutinesAndWarmFunctionsAreCutOff) {
  Runner r(kBudgetMs);
  ASSERT_TRUE(r.runner);
  HookDecision d = r.request("/coroutine");
  ASSERT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_THAT(d.error, HasSubstr(":19: http_request hook exceeded its time budget"));
  // spin() ran hot while the config loaded: with the JIT on, its loop would be a
  // compiled trace by now, which no hook can interrupt.
  d = r.request("/warm");
  ASSERT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_THAT(d.error, HasSubstr(":2: http_request hook exceeded its time budget"));
  d = r.request("/jit");
  EXPECT_EQ(d.body.view(), "false");
}

TEST(HookBudget, ZeroMeansUnlimited) {
  Runner r(0);
  ASSERT_TRUE(r.runner);
  EXPECT_EQ(r.request("/finite").kind, HookDecision::Kind::kContinue);
}

}  // namespace
}  // namespace crescent::lua
