// Broken configurations -> the exact `file:line: message` a user sees.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lua.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/unit/lua/lua_test_util.h"

namespace crescent::lua {
namespace {

using testing::loadConfig;

struct BadConfig {
  const char* name;
  const char* text;
  const char* error;
};

const BadConfig kBad[] = {
    {"unknown key", "frontend \"public\" {\n  bind { \":80\" },\n  maxcon = 3,\n}\n",
     "cfg.lua:3: frontend \"public\": unknown key \"maxcon\" (did you mean \"maxconn\"?)"},
    {"unknown key without a near match", "backend \"b\" { colour = \"blue\" }\n",
     "cfg.lua:1: backend \"b\": unknown key \"colour\""},
    {"unknown timeout", "defaults {\n  timeout = {\n    clinet = \"1s\" } }\n",
     "cfg.lua:3: defaults: unknown key \"timeout.clinet\" (did you mean \"timeout.client\"?)"},
    {"wrong type", "backend \"b\" {\n  retries = \"3\",\n}\n",
     "cfg.lua:2: backend \"b\": \"retries\" must be a number (got string)"},
    {"wrong type boolean", "frontend \"f\" { bind { \":1\" }, forwardfor = 1 }\n",
     "cfg.lua:1: frontend \"f\": \"forwardfor\" must be a boolean (got number)"},
    {"wrong type log", "frontend \"f\" { bind { \":1\" }, log = 1 }\n",
     "cfg.lua:1: frontend \"f\": \"log\" must be a boolean or a function (got number)"},
    {"wrong type hook", "frontend \"f\" { bind { \":1\" }, http_request = \"f\" }\n",
     "cfg.lua:1: frontend \"f\": \"http_request\" must be a function (got string)"},
    {"wrong type timeout", "backend \"b\" { timeout = \"5s\" }\n",
     "cfg.lua:1: backend \"b\": \"timeout\" must be a table (got string)"},
    {"runtime without a socket", "global {\n  runtime = { mode = \"0600\" },\n}\n",
     "cfg.lua:2: global: runtime: socket: a UNIX socket path is required"},
    {"runtime mode not octal", "global { runtime = { socket = \"/tmp/x.sock\", mode = \"rw\" } }\n",
     "cfg.lua:1: global: runtime: mode must be octal permissions like \"0600\" (got \"rw\")"},
    {"unknown runtime key", "global { runtime = { sockt = \"/tmp/x.sock\" } }\n",
     "cfg.lua:1: global: unknown key \"runtime.sockt\" (did you mean \"runtime.socket\"?)"},
    {"negative max_generations", "global { max_generations = -1 }\n",
     "cfg.lua:1: global: \"max_generations\" must be between 0 and 1000 (got -1)"},
    {"not an integer", "global { threads = 1.5 }\n",
     "cfg.lua:1: global: \"threads\" must be an integer (got 1.5)"},
    {"negative", "global { maxconn = -1 }\n",
     "cfg.lua:1: global: \"maxconn\" must be between 0 and 2147483647 (got -1)"},
    {"bad duration", "backend \"b\" { timeout = { connect = \"5 seconds\" } }\n",
     "cfg.lua:1: backend \"b\": \"timeout.connect\": invalid duration \"5 seconds\" (expected "
     "e.g. 1500, \"1500ms\", \"5s\", \"1m30s\"; units ms, s, m, h, d)"},
    {"duration of the wrong type", "backend \"b\" { timeout = { connect = true } }\n",
     "cfg.lua:1: backend \"b\": \"timeout.connect\" must be a duration (got boolean)"},
    {"bad size", "global { bufsize = \"16kb\" }\n",
     "cfg.lua:1: global: \"bufsize\": invalid size \"16kb\" (expected e.g. 512, \"16k\", \"4m\"; "
     "suffixes k, m, g)"},
    {"size too small", "global { bufsize = 100 }\n",
     "cfg.lua:1: global: \"bufsize\" must be between 1024 and 1073741824 bytes (got 100)"},
    {"bad mode", "defaults { mode = \"udp\" }\n",
     "cfg.lua:1: defaults: \"mode\" must be \"http\" or \"tcp\" (got \"udp\")"},
    {"port out of range", "backend \"api\" {\n  server \"a1\" { \"10.0.0.1:99999\" },\n}\n",
     "cfg.lua:2: backend \"api\": server \"a1\": invalid address \"10.0.0.1:99999\" (port out of "
     "range)"},
    {"bad bind address", "frontend \"f\" {\n  bind { \"nowhere:80\" },\n}\n",
     "cfg.lua:2: frontend \"f\": bind: invalid address \"nowhere:80\" (not an IPv4 address: "
     "\"nowhere\")"},
    {"missing address", "backend \"b\" { server \"s\" { weight = 2 } }\n",
     "cfg.lua:1: backend \"b\": server \"s\": missing address (server \"s\" { \"127.0.0.1:8080\" "
     "})"},
    {"two addresses", "frontend \"f\" { bind { \":1\", \":2\" } }\n",
     "cfg.lua:1: frontend \"f\": bind: one address per bind (write one bind per address)"},
    {"weight out of range", "backend \"b\" { server \"s\" { \"127.0.0.1:1\", weight = 257 } }\n",
     "cfg.lua:1: backend \"b\": server \"s\": \"weight\" must be between 0 and 256 (got 257)"},
    {"unknown server key",
     "backend \"b\" {\n  server \"s\" { \"127.0.0.1:1\",\n    wieght = 2 } }\n",
     "cfg.lua:3: backend \"b\": server \"s\": unknown key \"wieght\" (did you mean \"weight\"?)"},
    {"missing backend", "frontend \"public\" {\n  bind { \":80\" },\n  use_backend { \"x\" },\n}\n",
     "cfg.lua:3: frontend \"public\": use_backend: no backend named \"x\""},
    {"missing default backend",
     "frontend \"public\" {\n  bind { \":80\" },\n\n  default_backend = \"x\",\n}\n",
     "cfg.lua:4: frontend \"public\": default_backend: no backend named \"x\""},
    {"mode mismatch",
     "backend \"db\" { mode = \"tcp\" }\nfrontend \"f\" {\n  bind { \":80\" },\n"
     "  use_backend { \"db\" },\n}\n",
     "cfg.lua:4: frontend \"f\": use_backend: backend \"db\" is in tcp mode but the frontend is "
     "in http mode"},
    {"duplicate backend", "backend \"b\" {}\nbackend \"b\" {}\n",
     "cfg.lua:2: backend \"b\": duplicate name (first declared at line 1)"},
    {"duplicate frontend", "frontend \"f\" { bind { \":1\" } }\nlisten \"f\" { bind { \":2\" } }\n",
     "cfg.lua:2: listen \"f\": duplicate frontend name (frontend \"f\" declared at line 1)"},
    {"duplicate server",
     "backend \"b\" {\n  server \"s\" { \":1\" },\n  server \"s\" { \":2\" },\n}\n",
     "cfg.lua:3: backend \"b\": server \"s\": duplicate name (first declared at line 2)"},
    {"unset env var",
     "frontend \"f\" {\n  bind { \"${CRESCENT_TEST_SURELY_UNSET_VARIABLE}\" },\n}\n",
     "cfg.lua:2: environment variable \"CRESCENT_TEST_SURELY_UNSET_VARIABLE\" is not set"},
    {"syntax error", "frontend \"f\" {\n  bind { \":80\" }\n  default_backend = \"b\",\n}\n",
     "cfg.lua:3: '}' expected (to close '{' at line 1) near 'default_backend'"},
    {"runtime error", "local t = nil\nlocal x = t.field\n",
     "cfg.lua:2: attempt to index local 't' (a nil value)"},
    {"error()", "\nerror(\"stop here\")\n", "cfg.lua:2: stop here"},
    {"error object", "error({})\n", "(error object is a table value)"},
    {"no bind", "frontend \"f\" { }\n",
     "cfg.lua:1: frontend \"f\": no bind (add bind { \":8080\" })"},
    {"section without body", "\nbackend \"b\"\n",
     "cfg.lua:2: backend \"b\": missing body (write backend \"b\" { ... })"},
    {"section without name", "backend { }\n",
     "cfg.lua:1: backend: expected a name: backend \"name\" { ... } (got table)"},
    {"body not a table", "backend \"b\" \"c\"\n",
     "cfg.lua:1: backend \"b\": expected a table body backend \"b\" { ... } (got string)"},
    {"server without body", "backend \"b\" {\n  server \"s\",\n}\n",
     "cfg.lua:2: backend \"b\": server \"s\" has no body (write server \"s\" { \"host:port\" })"},
    {"entry in the wrong section", "backend \"b\" {\n  bind { \":80\" },\n}\n",
     "cfg.lua:2: backend \"b\": bind entries are not allowed here (expected server entries)"},
    {"entry written as a key", "frontend \"f\" { bind = \":80\" }\n",
     "cfg.lua:1: frontend \"f\": \"bind\" is written as an entry: bind { ... }"},
    {"stray value", "frontend \"f\" { bind { \":1\" }, \"oops\" }\n",
     "cfg.lua:1: frontend \"f\": unexpected value \"oops\" at position 2 (expected bind, "
     "use_backend entries)"},
    {"listen default_backend", "listen \"l\" {\n  bind { \":1\" },\n  default_backend = \"x\" }\n",
     "cfg.lua:3: listen \"l\": \"default_backend\" is implied in a listen section (it is the "
     "listen itself)"},
    {"http_request in tcp mode",
     "frontend \"f\" { mode = \"tcp\", bind { \":1\" }, http_request = function() end }\n",
     "cfg.lua:1: frontend \"f\": \"http_request\" needs mode = \"http\""},
    {"servers and service", "backend \"b\" { server \"s\" { \":1\" }, service = function() end }\n",
     "cfg.lua:1: backend \"b\": has both servers and a service (use one or the other)"},
    {"bad balance", "backend \"b\" { balance = \"rr\" }\n",
     "cfg.lua:1: backend \"b\": \"balance\" must be \"roundrobin\", \"static-rr\", \"leastconn\", "
     "\"first\", \"source\", \"uri\", \"random\", \"url_param(name)\" or \"hdr(name)\" (got "
     "\"rr\")"},
    {"when is not an acl",
     "backend \"b\" {}\nfrontend \"f\" { bind { \":1\" }, use_backend { \"b\", when = true } }\n",
     "cfg.lua:2: frontend \"f\": use_backend \"b\": \"when\" must be an ACL (acl.*) (got "
     "boolean)"},
    {"acl without values", "local a = acl.path_beg()\n",
     "cfg.lua:1: acl.path_beg: needs at least one value"},
    {"acl value type", "local a = acl.path(5)\n",
     "cfg.lua:1: acl.path: value 1 must be a string (got number)"},
    {"acl option", "local a = acl.path('/', { nocas = true })\n",
     "cfg.lua:1: acl.path: unknown option \"nocas\" (only nocase)"},
    {"acl operator on a non-acl", "local a = acl.path('/')\n  * 5\n",
     "cfg.lua:2: ACL \"*\": argument 2 is not an ACL (got number)"},
    {"acl method on a leaf", "local a = acl.path('/'):eq('x')\n",
     "cfg.lua:1: eq() applies to acl.hdr(name) or acl.url_param(name)"},
    {"require a missing module", "local m = require 'nope'\n",
     "cfg.lua:1: require: module \"nope\" not found (no file \"DIR/nope.lua\")"},
    {"sandbox", "os.execute('true')\n", "cfg.lua:1: attempt to call field 'execute' (a nil value)"},
};

TEST(ConfigErrors, ExactMessages) {
  for (const BadConfig& bad : kBad) {
    SCOPED_TRACE(bad.name);
    testing::TempDir dir;
    std::string path = dir.write("cfg.lua", bad.text);
    auto st = ScriptState::load(path);
    std::string error;
    if (!st.ok()) {
      error = st.message();
    } else {
      auto cfg = (*st)->buildConfig();
      ASSERT_FALSE(cfg.ok()) << "loaded: " << bad.text;
      error = cfg.message();
    }
    // Paths in messages are the full path; "DIR" in an expectation stands for the directory.
    std::string expected = bad.error;
    size_t at = expected.find("DIR");
    if (at != std::string::npos) expected.replace(at, 3, dir.path());
    EXPECT_EQ(testing::stripDir(error, dir.path()), testing::stripDir(expected, dir.path()));
  }
}

TEST(ConfigErrors, AclCompileErrorsNameTheLeafLine) {
  // The text after the prefix is core/config/acl.cc's.
  auto l = loadConfig(
      "backend \"b\" {}\nfrontend \"f\" {\n  bind { \":1\" },\n  use_backend { \"b\",\n"
      "    when = acl.path('/') + acl.path_reg('a(') },\n}\n");
  EXPECT_THAT(l.error, ::testing::StartsWith("cfg.lua:5: frontend \"f\": use_backend \"b\": "));
  EXPECT_THAT(l.error, ::testing::HasSubstr("invalid regex \"a(\""));
}

TEST(ConfigErrors, LongPathsAreNotShortened) {
  testing::TempDir dir;
  std::string sub = "a-directory-name-long-enough-to-pass-luajit-idsize-of-sixty-bytes";
  std::string path = dir.write(sub + "/cfg.lua", "local x = nil\nlocal y = x + 1\n");
  auto st = ScriptState::load(path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), path + ":2: attempt to perform arithmetic on local 'x' (a nil value)");
  std::string mod = dir.write(sub + "/mod.lua", "local z = nil .. 'x'\n");
  path = dir.write(sub + "/req.lua", "require 'mod'\n");
  st = ScriptState::load(path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), mod + ":1: attempt to concatenate a nil value");
}

TEST(ConfigErrors, UnreadableFile) {
  auto st = ScriptState::load("/nonexistent/crescent.lua");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(),
            "cannot read config \"/nonexistent/crescent.lua\": No such file or directory");
}

TEST(ConfigErrors, ConfigFunctionsAreClosedAfterLoad) {
  auto l = loadConfig("function late() backend 'late' {} end\n");
  ASSERT_TRUE(l.state) << l.error;
  lua_State* L = l.state->L();
  lua_getglobal(L, "late");
  ASSERT_NE(lua_pcall(L, 0, 0, 0), 0);
  EXPECT_THAT(
      lua_tostring(L, -1),
      ::testing::EndsWith(
          ":1: backend: configuration functions can only be used while the configuration script "
          "loads"));
  lua_pop(L, 1);
}

TEST(ConfigErrors, RunawayConfigScriptIsCutOff) {
  testing::TempDir dir;
  std::string path = dir.write("loop.lua", "local n = 0\nwhile true do n = n + 1 end\n");
  ScriptState::LoadOptions options;
  options.budget_ms = 200;
  auto st = ScriptState::load(path, options);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), path + ":2: config script exceeded its time budget (200 ms)");
}

// Every file of tests/configs/bad fails with the text of its first line's
// `-- expect: <text>` (the integration test runs `crescent -c -f` on the same files).
TEST(ConfigErrors, BadConfigFiles) {
  std::filesystem::path dir = std::filesystem::path(CRESCENT_SOURCE_DIR) / "tests/configs/bad";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".lua") continue;
    SCOPED_TRACE(e.path().string());
    std::ifstream in(e.path());
    std::string first;
    std::getline(in, first);
    const std::string tag = "-- expect: ";
    ASSERT_EQ(first.compare(0, tag.size(), tag), 0) << "first line must be " << tag << "...";
    std::string expect = first.substr(tag.size());
    auto st = ScriptState::load(e.path().string());
    std::string error;
    if (!st.ok()) {
      error = st.message();
    } else {
      auto cfg = (*st)->buildConfig();
      ASSERT_FALSE(cfg.ok()) << "loaded without error";
      error = cfg.message();
    }
    EXPECT_THAT(error, ::testing::HasSubstr(expect));
    // The message starts with the path as given, then the line.
    EXPECT_THAT(error, ::testing::StartsWith(e.path().string() + ":"));
    ++n;
  }
  EXPECT_GE(n, 30);
}

}  // namespace
}  // namespace crescent::lua
