// lua/hook_runner: http_request hooks (txn) and services (applet), errors, time budget.

#include "lua/hook_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lua.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "tests/unit/lua/lua_test_util.h"

namespace crescent::lua {
namespace {

using core::HookDecision;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A loaded script, its config and a runner over it.
struct Fixture {
  testing::TempDir dir;
  std::shared_ptr<core::Config> config;
  std::unique_ptr<HookRunner> runner;

  Fixture(const std::string& text, uint64_t budget_ms = HookRunner::kDefaultBudgetMs) {
    std::string path = dir.write("cfg.lua", text);
    auto st = ScriptState::load(path);
    EXPECT_TRUE(st.ok()) << st.message();
    if (!st.ok()) return;
    auto cfg = (*st)->buildConfig();
    EXPECT_TRUE(cfg.ok()) << cfg.message();
    if (cfg.ok()) config = *cfg;
    runner = std::make_unique<HookRunner>(std::move(*st), budget_ms);
  }
  int hook(size_t frontend = 0) const { return config->frontends.at(frontend).http_request_hook; }
  int service(const std::string& backend) const {
    return config->backends.at(config->findBackend(backend)).service_hook;
  }
};

// A request as the session would hand it over.
struct Request {
  core::HttpHead req;
  core::Address src = *core::Address::parse("10.1.2.3:5555");
  core::Address dst = *core::Address::parse("127.0.0.1:8080");
  core::RequestContext ctx{req, src, dst, "public"};

  Request(const char* method = "GET", const char* target = "/a/b?x=1&y=2") {
    req.method = method;
    req.target = target;
    req.version_minor = 1;
    req.add("Host", "example.com");
    req.add("Accept", "text/html");
    req.add("X-Multi", "one");
    req.add("x-multi", "two");
  }
  std::string header(const char* name) const {
    const core::HeaderField* f = req.find(name);
    return f ? std::string(f->value) : "<none>";
  }
};

std::string wrapHook(const std::string& body) {
  return "backend \"other\" {}\nbackend \"tcp\" { mode = \"tcp\" }\n"
         "frontend \"public\" {\n  bind { \":8080\" },\n  http_request = function(txn)\n" +
         body + "\n  end,\n}\n";
}

TEST(HookTxn, ReadsTheRequest) {
  Fixture f(wrapHook(R"(
    local h = txn.req:headers()
    txn:reply(200, table.concat({
      txn.req.method, txn.req.path, txn.req.query, txn.req.target, txn.req.version,
      txn.req:header("host"), tostring(txn.req:header("missing")),
      h["x-multi"][1], h["x-multi"][2], #h["x-multi"], h.accept[1],
      txn.src, txn.src_port, txn.dst, txn.dst_port, txn.frontend,
      tostring(txn), tostring(txn.req), tostring(getmetatable(txn)),
    }, "|"))
  )"));
  ASSERT_TRUE(f.runner);
  Request r;
  HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
  ASSERT_EQ(d.kind, HookDecision::Kind::kReply) << d.error;
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(d.body.view(),
            "GET|/a/b|x=1&y=2|/a/b?x=1&y=2|1.1|example.com|nil|one|two|2|text/html|"
            "10.1.2.3|5555|127.0.0.1|8080|public|txn|txn.req|false");
}

TEST(HookTxn, TlsIsNilWithoutTlsAndATableWithIt) {
  Fixture f(wrapHook(R"(
    local t = txn.tls
    if t == nil then return txn:reply(200, "nil") end
    txn:reply(200, table.concat({ t.version, t.cipher, tostring(t.sni), tostring(t.alpn),
                                  tostring(t.resumed) }, "|"))
  )"));
  ASSERT_TRUE(f.runner);
  Request plain;
  HookDecision d = f.runner->runHttpRequest(f.hook(), plain.ctx);
  ASSERT_EQ(d.kind, HookDecision::Kind::kReply) << d.error;
  EXPECT_EQ(d.body.view(), "nil");

  core::tls::Info info{"TLSv1.3", "TLS_AES_128_GCM_SHA256", "site.test", "http/1.1", true, {}};
  Request r;
  r.ctx.tls = &info;
  d = f.runner->runHttpRequest(f.hook(), r.ctx);
  ASSERT_EQ(d.kind, HookDecision::Kind::kReply) << d.error;
  EXPECT_EQ(d.body.view(), "TLSv1.3|TLS_AES_128_GCM_SHA256|site.test|http/1.1|true");

  core::tls::Info bare{"TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", "", "", false, std::nullopt};
  r.ctx.tls = &bare;  // no SNI, no ALPN: the fields are absent, not ""
  d = f.runner->runHttpRequest(f.hook(), r.ctx);
  ASSERT_EQ(d.kind, HookDecision::Kind::kReply) << d.error;
  EXPECT_EQ(d.body.view(), "TLSv1.2|ECDHE-ECDSA-AES128-GCM-SHA256|nil|nil|false");
}

TEST(HookTxn, TlsClientIsTheCertificateOrNil) {
  Fixture f(wrapHook(R"(
    local c = txn.tls.client
    if c == nil then return txn:reply(200, "nil") end
    txn:reply(200, table.concat({ tostring(c.verified), tostring(c.error), c.subject, c.issuer,
                                  c.cn, c.serial, string.format("%d", c.not_before),
                                  string.format("%d", c.not_after), c.sha256 }, "|"))
  )"));
  ASSERT_TRUE(f.runner);
  core::tls::Info info{"TLSv1.3", "TLS_AES_128_GCM_SHA256", "", "", false, std::nullopt};
  Request r;
  r.ctx.tls = &info;
  HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
  ASSERT_EQ(d.kind, HookDecision::Kind::kReply) << d.error;
  EXPECT_EQ(d.body.view(), "nil");

  core::tls::ClientCert c;
  c.verified = false;
  c.verify_code = 10;
  c.error = "certificate has expired";
  c.subject = "CN=alice,O=Example";
  c.issuer = "CN=Example CA";
  c.cn = "alice";
  c.serial = "1000";
  c.not_before = 1577836800;
  c.not_after = 1577923200;
  c.sha256 = std::string(64, 'a');
  info.client = c;
  d = f.runner->runHttpRequest(f.hook(), r.ctx);
  ASSERT_EQ(d.kind, HookDecision::Kind::kReply) << d.error;
  EXPECT_EQ(d.body.view(),
            "false|certificate has expired|CN=alice,O=Example|CN=Example CA|alice|"
            "1000|1577836800|1577923200|" +
                std::string(64, 'a'));
  info.client->verified = true;
  info.client->error.clear();  // verified: no error field at all
  d = f.runner->runHttpRequest(f.hook(), r.ctx);
  EXPECT_EQ(d.body.view().substr(0, 9), "true|nil|");
}

TEST(HookTxn, EditsHeadersAndPath) {
  Fixture f(wrapHook(R"(
    txn.req:set_header("X-Set", "1")
    txn.req:set_header("accept", "application/json")
    txn.req:add_header("X-Multi", 3)
    local n = txn.req:del_header("host")
    txn.req:add_header("x-deleted", tostring(n))
    txn.req:set_path("/new/path")
  )"));
  ASSERT_TRUE(f.runner);
  Request r;
  HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
  EXPECT_EQ(d.kind, HookDecision::Kind::kContinue) << d.error;
  EXPECT_EQ(r.header("x-set"), "1");
  EXPECT_EQ(r.header("Accept"), "application/json");
  EXPECT_EQ(r.req.count("accept"), 1u);
  EXPECT_EQ(r.req.count("x-multi"), 3u);
  std::vector<std::string> multi;
  for (const auto& h : r.req.headers)
    if (core::equalsNoCase(h.name, "x-multi")) multi.emplace_back(h.value);
  EXPECT_EQ(multi, (std::vector<std::string>{"one", "two", "3"}));
  EXPECT_EQ(r.header("host"), "<none>");
  EXPECT_EQ(r.header("x-deleted"), "1");
  EXPECT_EQ(r.req.target, "/new/path?x=1&y=2");
  EXPECT_EQ(r.req.path(), "/new/path");
}

TEST(HookTxn, SetPathKeepsQueryAndAuthority) {
  Fixture f(wrapHook("txn.req:set_path('/p')"));
  ASSERT_TRUE(f.runner);
  for (auto [in, out] : {std::pair{"/old", "/p"},
                         {"/old?", "/p?"},
                         {"/o?q=1#f", "/p?q=1#f"},
                         {"http://h:80/old?q", "http://h:80/p?q"},
                         {"http://h", "http://h/p"},
                         {"http://h?q", "http://h/p?q"}}) {
    Request r("GET", in);
    HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
    EXPECT_EQ(d.kind, HookDecision::Kind::kContinue) << d.error;
    EXPECT_EQ(r.req.target, out) << in;
  }
  Request star("OPTIONS", "*");
  HookDecision d = f.runner->runHttpRequest(f.hook(), star.ctx);
  EXPECT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_THAT(d.error, HasSubstr("txn.req:set_path: the request target \"*\" has no path"));
}

TEST(HookTxn, ReplyDenyUseBackendContinue) {
  Fixture f(wrapHook(R"(
    local p = txn.req.path
    if p == "/reply" then
      return txn:reply(201, "made", { ["content-type"] = "text/plain", ["set-cookie"] = { "a=1", "b=2" } })
    elseif p == "/deny" then txn:deny()
    elseif p == "/deny429" then txn:deny(429)
    elseif p == "/other" then txn:use_backend("other")
    elseif p == "/empty" then txn:reply(204)
    end
  )"));
  ASSERT_TRUE(f.runner);
  {
    Request r("GET", "/reply");
    HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
    ASSERT_EQ(d.kind, HookDecision::Kind::kReply) << d.error;
    EXPECT_EQ(d.status, 201);
    EXPECT_EQ(d.body.view(), "made");
    using H = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(d.headers,
              (H{{"content-type", "text/plain"}, {"set-cookie", "a=1"}, {"set-cookie", "b=2"}}));
  }
  {
    Request r("GET", "/deny");
    HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
    ASSERT_EQ(d.kind, HookDecision::Kind::kReply);
    EXPECT_EQ(d.status, 403);
    EXPECT_EQ(d.body.view(), "403 Forbidden\n");
  }
  {
    Request r("GET", "/deny429");
    HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
    EXPECT_EQ(d.status, 429);
    EXPECT_EQ(d.body.view(), "429 Too Many Requests\n");
  }
  {
    Request r("GET", "/other");
    HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
    ASSERT_EQ(d.kind, HookDecision::Kind::kUseBackend);
    EXPECT_EQ(d.backend, "other");
  }
  {
    Request r("GET", "/empty");
    HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
    EXPECT_EQ(d.kind, HookDecision::Kind::kReply);
    EXPECT_EQ(d.status, 204);
    EXPECT_EQ(d.body.view(), "");
  }
  {
    Request r("GET", "/nothing");
    HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
    EXPECT_EQ(d.kind, HookDecision::Kind::kContinue);
  }
}

// A hook whose script line is known: `error` on line 7 of the generated config.
TEST(HookTxn, ErrorsFailWithTraceback) {
  Fixture f(wrapHook("    local function inner() error('boom') end\n    inner()"));
  ASSERT_TRUE(f.runner);
  Request r;
  HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
  ASSERT_EQ(d.kind, HookDecision::Kind::kFail);
  std::string path = f.dir.path() + "/cfg.lua";
  EXPECT_THAT(d.error, StartsWith(path + ":6: boom\nstack traceback:\n"));
  EXPECT_THAT(d.error, HasSubstr(path + ":7:"));
  // The state is usable afterwards.
  d = f.runner->runHttpRequest(f.hook(), r.ctx);
  EXPECT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_EQ(lua_gettop(f.runner->state().L()), 0);
}

TEST(HookTxn, MisuseFails) {
  struct Case {
    const char* code;
    const char* error;
  };
  const Case cases[] = {
      {"txn:reply(200) txn:deny()", "txn:deny: the hook already decided (txn:reply was called)"},
      {"txn:use_backend('nope')", "txn:use_backend: no backend named \"nope\""},
      {"txn:use_backend('tcp')", "txn:use_backend: backend \"tcp\" is in tcp mode"},
      {"txn:reply(99)", "txn:reply: invalid status 99 (expected 100..599)"},
      {"txn:reply(200, 'x', { ['bad name'] = 'v' })", "txn:reply: invalid header name"},
      {"txn.req:set_header('x', 'a\\r\\nInjected: 1')",
       "txn.req:set_header: invalid value for \"x\" (contains CR, LF or NUL)"},
      {"txn.req:add_header('bad:name', 'v')", "txn.req:add_header: invalid header name"},
      {"txn.req:set_path('relative')", "txn.req:set_path: the path must start with \"/\""},
      {"txn.req:set_path('/a b')", "txn.req:set_path: invalid character in path"},
      {"txn.x = 1", "txn is read-only"},
      {"txn.req.path = '/x'", "txn.req is read-only"},
      {"txn.req.header('x')", "bad argument #1 to 'header'"},
      {"frontend 'late' {}", "configuration functions can only be used while"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.code);
    Fixture f(wrapHook(c.code));
    ASSERT_TRUE(f.runner);
    Request r;
    HookDecision d = f.runner->runHttpRequest(f.hook(), r.ctx);
    EXPECT_EQ(d.kind, HookDecision::Kind::kFail);
    EXPECT_THAT(d.error, HasSubstr(c.error));
    EXPECT_EQ(d.status, 0);  // a failed hook's partial decision is dropped
  }
}

TEST(HookTxn, TxnUsedOutsideItsHook) {
  Fixture f(wrapHook(R"(
    if saved then
      local ok, err = pcall(function() return saved.req.path end)
      txn:reply(200, tostring(err))
      return
    end
    saved = txn
  )"));
  ASSERT_TRUE(f.runner);
  Request r1;
  EXPECT_EQ(f.runner->runHttpRequest(f.hook(), r1.ctx).kind, HookDecision::Kind::kContinue);
  // From outside any hook.
  lua_State* L = f.runner->state().L();
  ASSERT_EQ(luaL_loadstring(L, "return saved.src"), 0);
  ASSERT_NE(lua_pcall(L, 0, 1, 0), 0);
  EXPECT_THAT(lua_tostring(L, -1), HasSubstr("txn used outside its hook"));
  lua_settop(L, 0);
  Request r2;
  HookDecision d = f.runner->runHttpRequest(f.hook(), r2.ctx);
  ASSERT_EQ(d.kind, HookDecision::Kind::kReply);
  EXPECT_THAT(d.body.view(), HasSubstr("txn used outside its hook"));
}

TEST(HookTxn, UnknownHookId) {
  Fixture f(wrapHook(""));
  ASSERT_TRUE(f.runner);
  Request r;
  HookDecision d = f.runner->runHttpRequest(99, r.ctx);
  EXPECT_EQ(d.kind, HookDecision::Kind::kFail);
  EXPECT_EQ(d.error, "no Lua http_request hook with id 99");
}

std::string wrapService(const std::string& body) {
  return "backend \"svc\" {\n  service = function(applet)\n" + body + "\n  end,\n}\n";
}

TEST(HookService, StatusHeadersBody) {
  Fixture f(wrapService(R"(
    local h = applet.headers
    applet:set_status(201, "Made")
    applet:add_header("content-type", "text/plain")
    applet:add_header("x-multi", h["x-multi"][2])
    applet:start_response()
    applet:send(table.concat({ applet.method, applet.path, applet.qs, applet.version,
                               applet.src, applet.src_port, h.host[1] }, "|"))
    applet:send("|end")
  )"));
  ASSERT_TRUE(f.runner);
  Request r("POST", "/svc/x?a=b");
  core::ServiceResponse resp = f.runner->runService(f.service("svc"), r.ctx, "");
  ASSERT_TRUE(resp.ok) << resp.error;
  EXPECT_EQ(resp.status, 201);
  EXPECT_EQ(resp.reason, "Made");
  using H = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(resp.headers, (H{{"content-type", "text/plain"}, {"x-multi", "two"}}));
  EXPECT_EQ(resp.body.view(), "POST|/svc/x|a=b|1.1|10.1.2.3|5555|example.com|end");
}

TEST(HookService, ReceiveGetsTheBody) {
  Fixture f(wrapService(R"(
    local first = applet:receive(3)
    local rest = applet:receive()
    local after = applet:receive()
    applet:send(first .. "+" .. rest .. "+[" .. after .. "]")
  )"));
  ASSERT_TRUE(f.runner);
  Request r("POST", "/");
  core::ServiceResponse resp = f.runner->runService(f.service("svc"), r.ctx, "hello world");
  ASSERT_TRUE(resp.ok) << resp.error;
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body.view(), "hel+lo world+[]");
}

TEST(HookService, DefaultsAndErrors) {
  Fixture f(wrapService(R"(
    local p = applet.path
    if p == "/send-first" then applet:send("x") applet:set_status(404)
    elseif p == "/error" then error("service failed")
    elseif p == "/bad-header" then applet:add_header("x", "a\nb")
    elseif p == "/saved" then saved = applet
    elseif p == "/use-saved" then applet:send(select(2, pcall(function() return saved.path end)))
    end
  )"));
  ASSERT_TRUE(f.runner);
  int id = f.service("svc");
  {
    Request r("GET", "/nothing");
    core::ServiceResponse resp = f.runner->runService(id, r.ctx, "");
    EXPECT_TRUE(resp.ok);
    EXPECT_EQ(resp.status, 200);
    EXPECT_TRUE(resp.headers.empty());
    EXPECT_EQ(resp.body.view(), "");
  }
  {
    Request r("GET", "/send-first");
    core::ServiceResponse resp = f.runner->runService(id, r.ctx, "");
    EXPECT_FALSE(resp.ok);
    EXPECT_EQ(resp.status, 500);
    EXPECT_THAT(resp.error, HasSubstr("applet:set_status: the response has already started"));
    EXPECT_EQ(resp.body.view(), "");
  }
  {
    Request r("GET", "/error");
    core::ServiceResponse resp = f.runner->runService(id, r.ctx, "");
    EXPECT_FALSE(resp.ok);
    EXPECT_THAT(resp.error, HasSubstr("cfg.lua:6: service failed\nstack traceback:"));
  }
  {
    Request r("GET", "/bad-header");
    EXPECT_FALSE(f.runner->runService(id, r.ctx, "").ok);
  }
  {
    Request r1("GET", "/saved");
    EXPECT_TRUE(f.runner->runService(id, r1.ctx, "").ok);
    Request r2("GET", "/use-saved");
    core::ServiceResponse resp = f.runner->runService(id, r2.ctx, "");
    EXPECT_THAT(resp.body.view(), HasSubstr("applet used outside its service"));
  }
}

}  // namespace
}  // namespace crescent::lua
