// Good configurations -> the expected core::Config (stdlib/config.lua + lua/config_builder).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lua.hpp>

#include <filesystem>
#include <string>

#include "core/config/acl.h"
#include "lua/config_builder.h"
#include "tests/unit/lua/lua_test_util.h"

namespace crescent::lua {
namespace {

using core::AclNode;
using core::Mode;
using testing::loadConfig;

TEST(ConfigLoad, BuiltInDefaults) {
  auto l = loadConfig(R"(
frontend "f" { bind { ":8080" }, default_backend = "b" }
backend "b" { server "s" { "127.0.0.1:9001" } }
)");
  ASSERT_TRUE(l.config) << l.error;
  const core::Config& c = *l.config;
  EXPECT_EQ(c.global.threads, 0);
  EXPECT_EQ(c.global.bufsize, 16384u);
  ASSERT_EQ(c.frontends.size(), 1u);
  const core::FrontendConfig& f = c.frontends[0];
  EXPECT_EQ(f.name, "f");
  EXPECT_EQ(f.line, 2);
  EXPECT_EQ(f.mode, Mode::kHttp);
  EXPECT_EQ(f.timeout.client, 30000u);
  EXPECT_EQ(f.timeout.connect, 5000u);
  EXPECT_EQ(f.timeout.http_request, 0u);
  EXPECT_FALSE(f.forwardfor);
  EXPECT_TRUE(f.log);
  EXPECT_EQ(f.maxconn, 0);
  EXPECT_EQ(f.http_request_hook, 0);
  ASSERT_EQ(f.binds.size(), 1u);
  EXPECT_EQ(f.binds[0].text, ":8080");
  EXPECT_EQ(f.binds[0].address.toString(), "0.0.0.0:8080");
  EXPECT_EQ(f.binds[0].line, 2);
  EXPECT_EQ(f.default_backend, "b");
  EXPECT_EQ(f.default_backend_index, 0);
  const core::BackendConfig& b = c.backends[0];
  EXPECT_EQ(b.line, 3);
  EXPECT_EQ(b.balance, "roundrobin");
  EXPECT_EQ(b.retries, 3);
  EXPECT_FALSE(b.redispatch);
  EXPECT_EQ(b.servers[0].name, "s");
  EXPECT_EQ(b.servers[0].weight, 1);
  EXPECT_EQ(b.servers[0].maxconn, 0);
  EXPECT_EQ(b.servers[0].line, 3);
  EXPECT_EQ(c.findBackend("b"), 0);
  EXPECT_THAT(c.path, ::testing::EndsWith("/cfg.lua"));
  EXPECT_THAT(c.script, ::testing::HasSubstr("frontend \"f\""));
}

TEST(ConfigLoad, DefaultsApplyToSectionsDeclaredAfterThem) {
  auto l = loadConfig(R"(
backend "before" {}
defaults {
  mode = "tcp", retries = 7, redispatch = true, forwardfor = true, maxconn = 50,
  balance = "leastconn", log = false,
  timeout = { connect = "1s", client = "2s", server = "3s", tunnel = "4s", queue = "5s",
              http_request = "6s", http_keep_alive = "7s", client_fin = "8s", server_fin = "9s" },
}
backend "after" { retries = 1, timeout = { server = "1m" } }
frontend "f" { bind { ":1" }, maxconn = 10, default_backend = "after" }
defaults { retries = 2 }
backend "reset" {}
)");
  ASSERT_TRUE(l.config) << l.error;
  const core::Config& c = *l.config;
  const core::BackendConfig& before = c.backends[0];
  EXPECT_EQ(before.mode, Mode::kHttp);
  EXPECT_EQ(before.retries, 3);
  EXPECT_EQ(before.timeout.connect, 5000u);
  const core::BackendConfig& after = c.backends[1];
  EXPECT_EQ(after.mode, Mode::kTcp);
  EXPECT_EQ(after.retries, 1);
  EXPECT_TRUE(after.redispatch);
  EXPECT_TRUE(after.forwardfor);
  EXPECT_EQ(after.balance, "leastconn");
  EXPECT_EQ(after.timeout.connect, 1000u);
  EXPECT_EQ(after.timeout.server, 60000u);  // merged key by key over the defaults
  EXPECT_EQ(after.timeout.tunnel, 4000u);
  EXPECT_EQ(after.timeout.queue, 5000u);
  EXPECT_EQ(after.timeout.server_fin, 9000u);
  const core::FrontendConfig& f = c.frontends[0];
  EXPECT_EQ(f.mode, Mode::kTcp);
  EXPECT_EQ(f.maxconn, 10);
  EXPECT_FALSE(f.log);
  EXPECT_EQ(f.timeout.client, 2000u);
  EXPECT_EQ(f.timeout.http_request, 6000u);
  EXPECT_EQ(f.timeout.http_keep_alive, 7000u);
  EXPECT_EQ(f.timeout.client_fin, 8000u);
  // A new defaults section replaces the previous one (HAProxy's rule).
  const core::BackendConfig& reset = c.backends[2];
  EXPECT_EQ(reset.retries, 2);
  EXPECT_EQ(reset.mode, Mode::kHttp);
  EXPECT_EQ(reset.timeout.connect, 5000u);
  EXPECT_FALSE(reset.redispatch);
}

TEST(ConfigLoad, ListenIsAFrontendAndABackend) {
  auto l = loadConfig(R"(
listen "app" {
  bind { "127.0.0.1:0" },
  timeout = { client = "3s", server = "4s" },
  maxconn = 9, retries = 1,
  service = function(applet) end,
}
)");
  ASSERT_TRUE(l.config) << l.error;
  const core::Config& c = *l.config;
  ASSERT_EQ(c.frontends.size(), 1u);
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.frontends[0].name, "app");
  EXPECT_EQ(c.frontends[0].default_backend, "app");
  EXPECT_EQ(c.frontends[0].default_backend_index, 0);
  EXPECT_EQ(c.frontends[0].maxconn, 9);
  EXPECT_EQ(c.frontends[0].timeout.client, 3000u);
  EXPECT_EQ(c.backends[0].name, "app");
  EXPECT_EQ(c.backends[0].retries, 1);
  EXPECT_EQ(c.backends[0].timeout.server, 4000u);
  EXPECT_EQ(c.backends[0].service_hook, 1);
  EXPECT_TRUE(c.backends[0].servers.empty());
  EXPECT_EQ(c.frontends[0].line, 2);
  EXPECT_EQ(c.backends[0].line, 2);
}

TEST(ConfigLoad, ServersBindsAndRules) {
  auto l = loadConfig(R"(
global { threads = 2, maxconn = 100, bufsize = 8192, hard_stop_after = "1h" }
backend "web" {
  server "a" { "127.0.0.1:9001", weight = 0, maxconn = 32 },
  server "b" { "[::1]:9002", weight = 256 },
  server "c" { "unix:/run/app.sock" },
  server "d" { "unix:@abstract" },
}
backend "ws" { server "w" { "localhost:9100" } }
backend "empty" {}
frontend "f" {
  bind { ":8080" },
  bind { "[::]:8443" },
  use_backend { "ws", when = acl.path_beg("/ws") },
  use_backend { "empty" },
  default_backend = "web",
}
)");
  ASSERT_TRUE(l.config) << l.error;
  const core::Config& c = *l.config;
  EXPECT_EQ(c.global.threads, 2);
  EXPECT_EQ(c.global.maxconn, 100);
  EXPECT_EQ(c.global.bufsize, 8192u);
  EXPECT_EQ(c.global.hard_stop_after, 3600000u);
  const auto& s = c.backends[0].servers;
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].weight, 0);
  EXPECT_EQ(s[0].maxconn, 32);
  EXPECT_EQ(s[1].weight, 256);
  EXPECT_EQ(s[1].address.toString(), "[::1]:9002");
  EXPECT_TRUE(s[2].address.isUnix());
  EXPECT_EQ(s[3].address.unixPath(), "@abstract");
  EXPECT_EQ(s[3].line, 7);
  EXPECT_EQ(c.backends[1].servers[0].address.toString(), "127.0.0.1:9100");
  EXPECT_TRUE(c.backends[2].servers.empty());
  const core::FrontendConfig& f = c.frontends[0];
  ASSERT_EQ(f.binds.size(), 2u);
  EXPECT_EQ(f.binds[1].line, 13);
  ASSERT_EQ(f.use_backend.size(), 2u);
  EXPECT_EQ(f.use_backend[0].backend, "ws");
  EXPECT_EQ(f.use_backend[0].backend_index, 1u);
  EXPECT_EQ(f.use_backend[0].line, 14);
  ASSERT_TRUE(f.use_backend[0].when);
  EXPECT_EQ(f.use_backend[1].backend_index, 2u);
  EXPECT_FALSE(f.use_backend[1].when);
  EXPECT_EQ(f.default_backend_index, 0);
}

TEST(ConfigLoad, HookIdsAreStableAcrossStates) {
  const char* text = R"(
local function svc(applet) applet:send("x") end
frontend "a" { bind { ":1" }, http_request = function(txn) end, default_backend = "s1" }
listen "l" { bind { ":2" }, http_request = function(txn) end, service = svc }
backend "s1" { service = svc }
frontend "b" { bind { ":3" }, http_request = function(txn) end, default_backend = "s1" }
on_reload(function() end)
)";
  testing::TempDir dir;
  std::string path = dir.write("hooks.lua", text);
  auto s1 = ScriptState::load(path);
  auto s2 = ScriptState::load(path);
  ASSERT_TRUE(s1.ok() && s2.ok()) << s1.message() << s2.message();
  auto c1 = (*s1)->buildConfig();
  auto c2 = (*s2)->buildConfig();
  ASSERT_TRUE(c1.ok() && c2.ok());
  EXPECT_EQ((*s1)->hookCount(), 6);
  EXPECT_EQ((*s2)->hookCount(), 6);
  std::vector<int> ids1, ids2;
  for (auto* c : {&**c1, &**c2}) {
    auto& ids = c == &**c1 ? ids1 : ids2;
    for (const auto& f : c->frontends) ids.push_back(f.http_request_hook);
    for (const auto& b : c->backends) ids.push_back(b.service_hook);
  }
  EXPECT_EQ(ids1, (std::vector<int>{1, 2, 5, 3, 4}));
  EXPECT_EQ(ids1, ids2);
  lua_State* L = (*s2)->L();
  EXPECT_TRUE((*s2)->pushHook(3));
  EXPECT_EQ(lua_type(L, -1), LUA_TFUNCTION);
  lua_pop(L, 1);
  EXPECT_FALSE((*s2)->pushHook(0));
  EXPECT_FALSE((*s2)->pushHook(7));
  EXPECT_EQ(lua_gettop(L), 0);
}

// Evaluates `expr` (an acl.* expression) and converts it to an AclNode.
AclNode aclOf(const std::string& expr) {
  auto state = ScriptState::loadSource("acl.lua", "A = " + expr + "\n");
  EXPECT_TRUE(state.ok()) << state.message();
  if (!state.ok()) return {};
  lua_State* L = (*state)->L();
  lua_getglobal(L, "A");
  auto node = aclNodeFromLua(L, -1);
  EXPECT_TRUE(node.ok()) << node.message();
  lua_pop(L, 1);
  return node.ok() ? *node : AclNode{};
}

TEST(ConfigAcl, Leaves) {
  AclNode n = aclOf("acl.path_beg('/a', '/b')");
  EXPECT_EQ(n.kind, AclNode::Kind::kMatch);
  EXPECT_EQ(n.fetch, AclNode::Fetch::kPath);
  EXPECT_EQ(n.op, AclNode::Op::kBeg);
  EXPECT_EQ(n.values, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_FALSE(n.nocase);
  EXPECT_EQ(n.line, 1);

  struct Case {
    const char* expr;
    AclNode::Fetch fetch;
    AclNode::Op op;
    const char* arg;
    std::vector<std::string> values;
    bool nocase;
  };
  using F = AclNode::Fetch;
  using O = AclNode::Op;
  const Case cases[] = {
      {"acl.path('/x')", F::kPath, O::kEq, "", {"/x"}, false},
      {"acl.path_end('.js', { nocase = true })", F::kPath, O::kEnd, "", {".js"}, true},
      {"acl.path_sub('adm')", F::kPath, O::kSub, "", {"adm"}, false},
      {"acl.path_reg('^/v[0-9]+/')", F::kPath, O::kReg, "", {"^/v[0-9]+/"}, false},
      {"acl.host('Example.com')", F::kHost, O::kEq, "", {"Example.com"}, true},
      {"acl.method('GET', 'HEAD')", F::kMethod, O::kEq, "", {"GET", "HEAD"}, false},
      {"acl.src('10.0.0.0/8', '::1')", F::kSrc, O::kCidr, "", {"10.0.0.0/8", "::1"}, false},
      {"acl.dst_port(80, '8000-8080')", F::kDstPort, O::kPortRange, "", {"80", "8000-8080"}, false},
      {"acl.hdr('Upgrade')", F::kHdr, O::kFound, "Upgrade", {}, false},
      {"acl.hdr('upgrade'):eq('websocket', { nocase = true })",
       F::kHdr,
       O::kEq,
       "upgrade",
       {"websocket"},
       true},
      {"acl.hdr('x'):beg('a')", F::kHdr, O::kBeg, "x", {"a"}, false},
      {"acl.hdr('x'):end_('a')", F::kHdr, O::kEnd, "x", {"a"}, false},
      {"acl.hdr('x'):sub('a')", F::kHdr, O::kSub, "x", {"a"}, false},
      {"acl.hdr('x'):reg('a+')", F::kHdr, O::kReg, "x", {"a+"}, false},
      {"acl.hdr_beg('host', 'api.')", F::kHdr, O::kBeg, "host", {"api."}, false},
      {"acl.hdr_end('host', '.com')", F::kHdr, O::kEnd, "host", {".com"}, false},
      {"acl.hdr_sub('ua', 'bot')", F::kHdr, O::kSub, "ua", {"bot"}, false},
      {"acl.hdr_reg('ua', 'bot$')", F::kHdr, O::kReg, "ua", {"bot$"}, false},
      {"acl.url_param('debug')", F::kUrlParam, O::kFound, "debug", {}, false},
      {"acl.url_param('v'):eq('2')", F::kUrlParam, O::kEq, "v", {"2"}, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expr);
    AclNode a = aclOf(c.expr);
    EXPECT_EQ(a.kind, AclNode::Kind::kMatch);
    EXPECT_EQ(a.fetch, c.fetch);
    EXPECT_EQ(a.op, c.op);
    EXPECT_EQ(a.arg, c.arg);
    EXPECT_EQ(a.values, c.values);
    EXPECT_EQ(a.nocase, c.nocase);
  }
}

TEST(ConfigAcl, Combinators) {
  AclNode n = aclOf("acl.path('/a') * acl.path('/b') * -acl.method('GET') + acl.host('h')");
  ASSERT_EQ(n.kind, AclNode::Kind::kAny);
  ASSERT_EQ(n.children.size(), 2u);
  const AclNode& all = n.children[0];
  ASSERT_EQ(all.kind, AclNode::Kind::kAll);
  ASSERT_EQ(all.children.size(), 3u);  // a * b * c is flattened
  EXPECT_EQ(all.children[2].kind, AclNode::Kind::kNot);
  ASSERT_EQ(all.children[2].children.size(), 1u);
  EXPECT_EQ(all.children[2].children[0].fetch, AclNode::Fetch::kMethod);
  EXPECT_EQ(n.children[1].fetch, AclNode::Fetch::kHost);

  AclNode none = aclOf("acl.none(acl.path('/a'), acl.path('/b'))");
  ASSERT_EQ(none.kind, AclNode::Kind::kNot);
  ASSERT_EQ(none.children[0].kind, AclNode::Kind::kAny);
  EXPECT_EQ(none.children[0].children.size(), 2u);
  EXPECT_EQ(aclOf("acl.all(acl.path('/a'))").kind, AclNode::Kind::kAll);
  EXPECT_EQ(aclOf("acl.any(acl.path('/a'), acl.path('/b'))").children.size(), 2u);
}

TEST(ConfigAcl, LinesOfAMultiLineExpression) {
  AclNode n = aclOf("acl.path('/a')\n  * acl.hdr('x')\n      :eq('1')\n");
  ASSERT_EQ(n.children.size(), 2u);
  EXPECT_EQ(n.children[0].line, 1);
  EXPECT_EQ(n.children[1].line, 3);
}

TEST(ConfigAcl, CompiledRulesMatch) {
  auto l = loadConfig(R"(
backend "ws" {}
frontend "f" {
  bind { ":1" },
  use_backend { "ws", when = acl.path_beg("/ws") * acl.hdr("upgrade"):eq("websocket", { nocase = true }) },
}
)");
  ASSERT_TRUE(l.config) << l.error;
  const auto& rule = l.config->frontends[0].use_backend[0];
  ASSERT_TRUE(rule.when);
  core::HttpHead req;
  req.method = "GET";
  req.target = "/ws/chat";
  req.add("Upgrade", "WebSocket");
  core::AclSample sample;
  sample.req = &req;
  EXPECT_TRUE(rule.when->match(sample));
  req.target = "/other";
  EXPECT_FALSE(rule.when->match(sample));
}

// Every file of tests/configs/good loads and builds.
TEST(ConfigLoad, GoodConfigFiles) {
  std::filesystem::path dir = std::filesystem::path(CRESCENT_SOURCE_DIR) / "tests/configs/good";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".lua") continue;
    SCOPED_TRACE(e.path().string());
    auto st = ScriptState::load(e.path().string());
    ASSERT_TRUE(st.ok()) << st.message();
    auto cfg = (*st)->buildConfig();
    EXPECT_TRUE(cfg.ok()) << cfg.message();
    ++n;
  }
  EXPECT_GE(n, 5);
}

TEST(ConfigLoad, Examples) {
  std::filesystem::path dir = std::filesystem::path(CRESCENT_SOURCE_DIR) / "examples";
  setenv("ENV_DEMO_ADDR", "127.0.0.1:8080", 1);
  setenv("ENV_DEMO_APP_ADDR", "127.0.0.1:9003", 1);
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.path().extension() != ".lua") continue;
    SCOPED_TRACE(e.path().string());
    auto st = ScriptState::load(e.path().string());
    // An example may require variables this test does not know about.
    if (!st.ok() && st.message().find("environment variable") != std::string::npos) continue;
    ASSERT_TRUE(st.ok()) << st.message();
    auto cfg = (*st)->buildConfig();
    EXPECT_TRUE(cfg.ok()) << cfg.message();
  }
  unsetenv("ENV_DEMO_ADDR");
  unsetenv("ENV_DEMO_APP_ADDR");
}

TEST(ConfigLoad, SandboxAndModules) {
  testing::TempDir dir;
  dir.write("lib/util.lua",
            "local M = {}\nfunction M.addr() return '127.0.0.1:9001' end\nreturn M\n");
  std::string path = dir.write("cfg.lua", R"(
local util = require "lib.util"
assert(require "lib.util" == util)
assert(io == nil and debug == nil and dofile == nil and loadfile == nil)
assert(os.exit == nil and os.execute == nil and os.remove == nil)
assert(type(os.getenv) == "function" and type(os.time) == "function" and type(os.clock) == "function")
assert(type(string.format) == "function" and type(table.concat) == "function" and math.pi)
assert(not pcall(require, "../etc/passwd"))
assert(not pcall(jit.on))
backend "b" { server "s" { util.addr() } }
)");
  auto st = ScriptState::load(path);
  ASSERT_TRUE(st.ok()) << st.message();
  auto cfg = (*st)->buildConfig();
  ASSERT_TRUE(cfg.ok()) << cfg.message();
  EXPECT_EQ((*cfg)->backends[0].servers[0].text, "127.0.0.1:9001");
}

}  // namespace
}  // namespace crescent::lua
