// The memory cap of a Lua state (lua/lua_memory.h, global.lua.maxmem): an allocation
// past it fails the call at once, pcall sees it, the state stays usable, and what the
// failed call left is collected before the next call.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <lua.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "lua/hook_runner.h"
#include "lua/lua_memory.h"
#include "tests/unit/lua/lua_test_util.h"

namespace crescent::lua {
namespace {

using core::HookDecision;
using ::testing::HasSubstr;

constexpr uint64_t kCap = 16u << 20;

const char* kScript = R"(-- line 1
keep = {}
frontend "f" {
  bind { ":1" },
  http_request = function(txn)
    local p = txn.req.path
    if p == "/big" then
      local s = string.rep("x", 2^30)
    elseif p == "/grow" then
      for i = 1, 1e9 do keep[i] = string.rep("y", 1000) .. i end
    elseif p == "/drop" then
      keep = {}
    elseif p == "/pcall" then
      local ok, err = pcall(string.rep, "x", 2^30)
      return txn:reply(200, tostring(ok) .. " " .. tostring(err))
    elseif p == "/small" then
      local t = {} for i = 1, 1000 do t[i] = tostring(i) end
      return txn:reply(200, "small")
    end
  end,
}
)";

struct Runner {
  testing::TempDir dir;
  std::string path;
  std::shared_ptr<core::Config> config;
  std::unique_ptr<HookRunner> runner;

  Runner() {
    path = dir.write("cfg.lua", kScript);
    ScriptState::LoadOptions opt;
    opt.maxmem = kCap;
    auto st = ScriptState::load(path, opt);
    EXPECT_TRUE(st.ok()) << st.message();
    if (!st.ok()) return;
    auto cfg = (*st)->buildConfig();
    EXPECT_TRUE(cfg.ok()) << cfg.message();
    config = *cfg;
    runner = std::make_unique<HookRunner>(std::move(*st), 10000);
  }

  HookDecision request(const char* target) {
    core::HttpHead req;
    req.method = "GET";
    req.target = target;
    core::Address a = *core::Address::parse("127.0.0.1:1");
    core::RequestContext ctx{req, a, a, "f"};
    return runner->runHttpRequest(config->frontends[0].http_request_hook, ctx);
  }
  LuaMemory& mem() { return *runner->state().memory(); }
};

TEST(LuaMemory, ThisLuaJitTakesTheCountingAllocator) {
  // Debian 12's LuaJIT is a GC64 build: lua_newstate with our allocator works. If this
  // fails, the fallback (no cap) is in use: see ScriptState and docs/lua-api.md.
  Runner r;
  ASSERT_TRUE(r.runner);
  ASSERT_NE(r.runner->state().memory(), nullptr);
  EXPECT_GT(r.mem().used, 0u);
  EXPECT_EQ(r.mem().limit, kCap);
  size_t gc_bytes = static_cast<size_t>(lua_gc(r.runner->state().L(), LUA_GCCOUNT, 0)) * 1024;
  EXPECT_NEAR(static_cast<double>(r.mem().used), static_cast<double>(gc_bytes), 64 * 1024.0);
}

TEST(LuaMemory, HugeAllocationFailsAtOnce) {
  Runner r;
  ASSERT_TRUE(r.runner);
  auto t0 = std::chrono::steady_clock::now();
  HookDecision d = r.request("/big");
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_THAT(d.error, HasSubstr("Lua memory limit reached (global.lua.maxmem = 16384 KB)"));
  EXPECT_LT(took, std::chrono::seconds(1));
  EXPECT_EQ(r.mem().limit_hits, 1u);
  EXPECT_LT(r.mem().used, kCap);
  EXPECT_EQ(r.request("/small").kind, HookDecision::Kind::kReply);
}

TEST(LuaMemory, PcallCatchesTheRefusal) {
  Runner r;
  ASSERT_TRUE(r.runner);
  HookDecision d = r.request("/pcall");
  ASSERT_EQ(d.kind, HookDecision::Kind::kReply) << d.error;
  EXPECT_EQ(d.body.view(), "false not enough memory");
}

TEST(LuaMemory, LiveDataAtTheCapFailsCallsThatAllocateUntilDropped) {
  Runner r;
  ASSERT_TRUE(r.runner);
  HookDecision d = r.request("/grow");  // keeps what it made in a global
  ASSERT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_THAT(d.error, HasSubstr("Lua memory limit reached"));
  // Still referenced: the state stays near the cap, and stays usable.
  EXPECT_GT(r.mem().used, kCap / 2);
  (void)r.request("/small");
  // Dropping it frees it at the next call's collection (the state is near its cap).
  EXPECT_EQ(r.request("/drop").kind, HookDecision::Kind::kContinue);
  EXPECT_EQ(r.request("/small").kind, HookDecision::Kind::kReply);
  EXPECT_LT(r.mem().used, kCap / 2);
}

TEST(LuaMemory, NoCapOutsideGuardedCalls) {
  Runner r;
  ASSERT_TRUE(r.runner);
  lua_State* L = r.runner->state().L();
  r.mem().limit = r.mem().used + 1024;
  // The core pushing values between calls is never refused (a refusal there would be
  // LuaJIT's panic).
  lua_createtable(L, 100000, 0);
  lua_pop(L, 1);
  EXPECT_EQ(r.mem().limit_hits, 0u);
}

}  // namespace
}  // namespace crescent::lua
