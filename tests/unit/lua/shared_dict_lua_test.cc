// lua/shared_dict_binding: crescent.shared(name) through the real script loader, in
// config evaluation and in hooks; data outlives the states (a reload); errors.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lua.hpp>

#include <memory>
#include <string>

#include "core/base/shared_dict.h"
#include "core/proto/http_head.h"
#include "lua/hook_runner.h"
#include "lua/script_state.h"
#include "tests/unit/lua/lua_test_util.h"

namespace crescent::lua {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Loads `script` (saved as cfg.lua) into a fresh state, as a reload does.
std::unique_ptr<ScriptState> loadState(const testing::TempDir& dir, const std::string& script,
                                       std::string* error = nullptr) {
  auto st = ScriptState::load(dir.write("cfg.lua", script));
  if (!st.ok()) {
    if (error != nullptr) *error = testing::stripDir(st.message(), dir.path());
    return nullptr;
  }
  return std::move(*st);
}

// Runs `chunk` in the state; returns tostring() of its first result, or "error: msg".
std::string eval(ScriptState& state, const std::string& chunk) {
  lua_State* L = state.L();
  int top = lua_gettop(L);
  std::string out;
  if (luaL_loadbuffer(L, chunk.data(), chunk.size(), "=chunk") != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    out = std::string("error: ") + lua_tostring(L, -1);
  } else {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
    out = lua_tostring(L, -1);
  }
  lua_settop(L, top);
  return out;
}

TEST(SharedDictLua, ValuesSurviveAReloadIntoANewState) {
  core::SharedDicts::get("lua-reload")->flushAll();  // the process's: --gtest_repeat
  testing::TempDir dir;
  // Generation 1's config script stores at evaluation time.
  auto gen1 = loadState(dir, R"(
local d = crescent.shared("lua-reload")
d:set("generation", 1)
d:add("first_loaded_by", "gen1")
d:incr("loads", 1, 0)
)");
  ASSERT_TRUE(gen1);
  gen1.reset();  // the old generation's state is gone

  // Generation 2 (a reload) finds the data by name, at evaluation time and later.
  auto gen2 = loadState(dir, R"(
local d = crescent.shared("lua-reload")
seen = d:get("generation")
d:set("generation", seen + 1)
d:add("first_loaded_by", "gen2")
d:incr("loads", 1, 0)
)");
  ASSERT_TRUE(gen2);
  EXPECT_EQ(eval(*gen2, "return seen"), "1");
  EXPECT_EQ(eval(*gen2, R"(
local d = crescent.shared("lua-reload")
return d:get("generation") .. " " .. d:get("first_loaded_by") .. " " .. d:get("loads"))"),
            "2 gen1 2");
  // The same dictionary from C++ (another thread would see the same).
  EXPECT_EQ(core::SharedDicts::get("lua-reload")->get("generation"), core::SharedValue(2.0));
}

TEST(SharedDictLua, TwoLiveStatesShareData) {
  testing::TempDir dir;
  auto a = loadState(dir, "");
  auto b = loadState(dir, "");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(eval(*a, "return crescent.shared('two-states'):set('k', 'from a')"), "true");
  EXPECT_EQ(eval(*b, "return crescent.shared('two-states'):get('k')"), "from a");
}

// A request as the session would hand it over (see hook_runner_test.cc).
struct Request {
  core::HttpHead req;
  core::Address src = *core::Address::parse("10.1.2.3:5555");
  core::Address dst = *core::Address::parse("127.0.0.1:8080");
  core::RequestContext ctx{req, src, dst, "public"};
  Request() {
    req.method = "GET";
    req.target = "/";
    req.version_minor = 1;
  }
};

TEST(SharedDictLua, HooksSeeWhatTheConfigStored) {
  core::SharedDicts::get("lua-hooks")->flushAll();
  testing::TempDir dir;
  auto st = ScriptState::load(dir.write("cfg.lua", R"(
local hits = crescent.shared("lua-hooks")
hits:set("greeting", "hello")
backend "b" {}
frontend "public" {
  bind { ":8080" },
  http_request = function(txn)
    local n = hits:incr("hits", 1, 0)
    txn:reply(200, hits:get("greeting") .. " " .. n .. " " .. crescent.shared("lua-hooks").name)
  end,
}
)"));
  ASSERT_TRUE(st.ok()) << st.message();
  auto cfg = (*st)->buildConfig();
  ASSERT_TRUE(cfg.ok()) << cfg.message();
  HookRunner runner(std::move(*st));
  for (int i = 1; i <= 2; ++i) {
    Request r;
    core::HookDecision d = runner.runHttpRequest((*cfg)->frontends.at(0).http_request_hook, r.ctx);
    ASSERT_EQ(d.kind, core::HookDecision::Kind::kReply) << d.error;
    EXPECT_EQ(d.body.view(), "hello " + std::to_string(i) + " lua-hooks");
  }
}

// The example of docs/lua-api.md "Shared dictionaries", verbatim.
constexpr const char* kDocExample = R"(
local counters = crescent.shared("counters")
counters:add("first_loaded", os.time())  -- add: kept as is by later reloads

backend "servers" { server "s1" { "127.0.0.1:9001" } }

frontend "public" {
  bind { ":8080" },
  http_request = function(txn)
    -- at most 100 requests per client address in a 10 s window
    local n = counters:incr("req:" .. txn.src, 1, 0, 10)
    if n > 100 then return txn:deny(429) end
  end,
  default_backend = "servers",
}
)";

TEST(SharedDictLua, DocExampleLimitsAClientAcrossStates) {
  core::SharedDicts::get("counters")->flushAll();
  testing::TempDir dir;
  std::string path = dir.write("cfg.lua", kDocExample);
  // Two workers' states: the count is shared.
  std::unique_ptr<HookRunner> workers[2];
  std::shared_ptr<core::Config> cfg;
  for (auto& w : workers) {
    auto st = ScriptState::load(path);
    ASSERT_TRUE(st.ok()) << st.message();
    auto c = (*st)->buildConfig();
    ASSERT_TRUE(c.ok()) << c.message();
    cfg = *c;
    w = std::make_unique<HookRunner>(std::move(*st));
  }
  int hook = cfg->frontends.at(0).http_request_hook;
  for (int i = 1; i <= 101; ++i) {
    Request r;
    core::HookDecision d = workers[i % 2]->runHttpRequest(hook, r.ctx);
    if (i <= 100) {
      ASSERT_EQ(d.kind, core::HookDecision::Kind::kContinue) << i << ": " << d.error;
    } else {
      ASSERT_EQ(d.kind, core::HookDecision::Kind::kReply) << d.error;
      EXPECT_EQ(d.status, 429);
    }
  }
  EXPECT_NE(core::SharedDicts::get("counters")->get("first_loaded"), core::SharedValue());
}

TEST(SharedDictLua, Api) {
  testing::TempDir dir;
  auto s = loadState(dir, "");
  ASSERT_TRUE(s);
  auto run = [&](const std::string& body) {
    return eval(*s, "local d = crescent.shared('lua-api')\n" + body);
  };
  run("d:flush_all()");
  EXPECT_EQ(run("return d.name"), "lua-api");
  EXPECT_EQ(run("return tostring(d)"), "shared dict \"lua-api\"");
  EXPECT_EQ(run("return d == crescent.shared('lua-api')"), "true");
  EXPECT_EQ(run("return d.no_such_field"), "nil");

  // Types round-trip; nil deletes.
  EXPECT_EQ(run(R"(
assert(d:set("b", true) == true)
assert(d:set("f", false))
assert(d:set("n", 2.5))
assert(d:set("s", "a\0b"))
return table.concat({ tostring(d:get("b")), tostring(d:get("f")), d:get("n"), #d:get("s"),
                      tostring(d:get("missing")) }, ","))"),
            "true,false,2.5,3,nil");
  EXPECT_EQ(run("d:set('n', nil) return d:get('n')"), "nil");
  EXPECT_EQ(run("d:set('x', 1) d:delete('x') return d:get('x')"), "nil");

  // add / replace / incr and their reasons.
  EXPECT_EQ(run("local ok, err = d:add('b', 1) return tostring(ok) .. ',' .. err"), "nil,exists");
  EXPECT_EQ(run("local ok, err = d:replace('zz', 1) return tostring(ok) .. ',' .. err"),
            "nil,not found");
  EXPECT_EQ(run("return d:replace('b', 'now') and d:get('b')"), "now");
  EXPECT_EQ(run("local v, err = d:incr('c', 1) return tostring(v) .. ',' .. err"), "nil,not found");
  EXPECT_EQ(run("return d:incr('c', 5, 10) + d:incr('c', -1)"), "29");  // 15 + 14
  EXPECT_EQ(run("local v, err = d:incr('s', 1) return tostring(v) .. ',' .. err"),
            "nil,not a number");
  EXPECT_EQ(run("d:set('t', 1, 3600) return d:get('t')"), "1");
  EXPECT_EQ(run("local ok, err = d:set('', 1) return tostring(ok) .. ',' .. err"), "nil,empty key");
  EXPECT_EQ(run("local v, err = d:get('') return tostring(v) .. ',' .. err"), "nil,empty key");
  EXPECT_EQ(run("local ok, err = d:set('big', string.rep('x', 1048577)) return err"),
            "value too large");
  EXPECT_EQ(run("local ok, err = d:set(string.rep('k', 65536), 1) return err"), "key too long");

  // get_keys: default 1024, 0 = all, max.
  run("d:flush_all() for i = 1, 1100 do d:set('k' .. i, i) end");
  EXPECT_EQ(run("return #d:get_keys()"), "1024");
  EXPECT_EQ(run("return #d:get_keys(0)"), "1100");
  EXPECT_EQ(run("return #d:get_keys(7)"), "7");
  EXPECT_EQ(run("d:flush_all() return #d:get_keys(0)"), "0");
}

TEST(SharedDictLua, MisuseRaisesNamingTheFunction) {
  testing::TempDir dir;
  auto s = loadState(dir, "");
  ASSERT_TRUE(s);
  auto err = [&](const std::string& body) {
    return eval(*s, "local d = crescent.shared('lua-errors')\n" + body);
  };
  EXPECT_EQ(err("crescent.shared()"),
            "error: chunk:2: crescent.shared: name must be a non-empty string (got no value)");
  EXPECT_EQ(err("crescent.shared('')"),
            "error: chunk:2: crescent.shared: name must be a non-empty string (got \"\")");
  EXPECT_EQ(err("crescent.shared(string.rep('n', 300))"),
            "error: chunk:2: crescent.shared: name too long (300 bytes, at most 256)");
  EXPECT_EQ(err("d:set(1, 2)"), "error: chunk:2: dict:set: key must be a string (got number)");
  EXPECT_EQ(err("d:get()"), "error: chunk:2: dict:get: key must be a string (got no value)");
  EXPECT_EQ(err("d:set('k', {})"),
            "error: chunk:2: dict:set: value must be nil, a boolean, a number or a string (got "
            "table)");
  EXPECT_EQ(err("d:add('k', nil)"),
            "error: chunk:2: dict:add: value must be a boolean, a number or a string (got nil)");
  EXPECT_EQ(err("d:set('k', 1, -1)"),
            "error: chunk:2: dict:set: ttl must be a number of seconds >= 0, 0 for none (got -1)");
  EXPECT_EQ(err("d:set('k', 1, '10')"),
            "error: chunk:2: dict:set: ttl must be a number (got string)");
  EXPECT_EQ(err("d:incr('k', 'x')"),
            "error: chunk:2: dict:incr: increment must be a number (got string)");
  EXPECT_EQ(err("d:incr('k', 1, 'x')"),
            "error: chunk:2: dict:incr: init must be a number (got string)");
  EXPECT_EQ(err("d:get_keys(-1)"),
            "error: chunk:2: dict:get_keys: max must be an integer >= 0, 0 for all (got -1)");
  EXPECT_EQ(err("d.get('k')"),
            "error: chunk:2: dict:get: call it as a method on a shared dict (dict:get(...))");
  EXPECT_EQ(err("d.name = 'x'"),
            "error: chunk:2: shared dict objects are read-only (use dict:set(key, value))");
  EXPECT_EQ(err("return getmetatable(d)"), "false");
}

TEST(SharedDictLua, ConfigErrorNamesTheLine) {
  testing::TempDir dir;
  std::string error;
  auto s =
      loadState(dir, "local d = crescent.shared('lua-cfg-error')\nd:set('k', print)\n", &error);
  EXPECT_FALSE(s);
  EXPECT_EQ(error,
            "cfg.lua:2: dict:set: value must be nil, a boolean, a number or a string (got "
            "function)");
}

}  // namespace
}  // namespace crescent::lua
