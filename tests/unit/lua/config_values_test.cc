// Durations, sizes and environment interpolation (stdlib/values.lua), through the DSL and
// directly through the embedded module.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <lua.hpp>

#include <string>

#include "tests/unit/lua/lua_test_util.h"

namespace crescent::lua {
namespace {

using testing::loadConfig;

/// Calls crescent.values.<fn>(arg) in a fresh state; returns "value" or "error: message".
std::string callValues(const char* fn, const std::string& arg, bool numeric_arg = false) {
  auto state = ScriptState::loadSource("values.lua", "");
  EXPECT_TRUE(state.ok()) << state.message();
  lua_State* L = (*state)->L();
  lua_getglobal(L, "require");
  lua_pushstring(L, "crescent.values");
  EXPECT_EQ(lua_pcall(L, 1, 1, 0), 0);
  lua_getfield(L, -1, fn);
  if (numeric_arg) {
    lua_pushnumber(L, std::stod(arg));
  } else {
    lua_pushlstring(L, arg.data(), arg.size());
  }
  EXPECT_EQ(lua_pcall(L, 1, 2, 0), 0);
  std::string out;
  if (lua_isnil(L, -2)) {
    out = std::string("error: ") + lua_tostring(L, -1);
  } else {
    out = lua_tostring(L, -2);
  }
  lua_settop(L, 0);
  return out;
}

TEST(ConfigValues, Durations) {
  EXPECT_EQ(callValues("duration", "1500", true), "1500");
  EXPECT_EQ(callValues("duration", "1500"), "1500");
  EXPECT_EQ(callValues("duration", "1500ms"), "1500");
  EXPECT_EQ(callValues("duration", "5s"), "5000");
  EXPECT_EQ(callValues("duration", "1.5s"), "1500");
  EXPECT_EQ(callValues("duration", "1m"), "60000");
  EXPECT_EQ(callValues("duration", "1m30s"), "90000");
  EXPECT_EQ(callValues("duration", "2h"), "7200000");
  EXPECT_EQ(callValues("duration", "1d"), "86400000");
  EXPECT_EQ(callValues("duration", "1h2m3s4ms"), "3723004");
  EXPECT_EQ(callValues("duration", "0"), "0");
  EXPECT_EQ(callValues("duration", "5x"),
            "error: invalid duration \"5x\" (expected e.g. 1500, \"1500ms\", \"5s\", \"1m30s\"; "
            "units ms, s, m, h, d)");
  EXPECT_THAT(callValues("duration", "s"),
              ::testing::StartsWith("error: invalid duration \"s\" (e"));
  EXPECT_THAT(callValues("duration", "5s junk"),
              ::testing::StartsWith("error: invalid duration \"5s junk\""));
  EXPECT_THAT(callValues("duration", "-1", true),
              ::testing::StartsWith("error: invalid duration -1"));
}

TEST(ConfigValues, Sizes) {
  EXPECT_EQ(callValues("size", "512", true), "512");
  EXPECT_EQ(callValues("size", "512"), "512");
  EXPECT_EQ(callValues("size", "16k"), "16384");
  EXPECT_EQ(callValues("size", "16K"), "16384");
  EXPECT_EQ(callValues("size", "4m"), "4194304");
  EXPECT_EQ(callValues("size", "1g"), "1073741824");
  EXPECT_EQ(callValues("size", "1.5k"), "1536");
  EXPECT_EQ(callValues("size", "16q"),
            "error: invalid size \"16q\" (expected e.g. 512, \"16k\", \"4m\"; suffixes k, m, g)");
  EXPECT_THAT(callValues("size", "1.5", true), ::testing::StartsWith("error: invalid size 1.5 ("));
}

class ConfigEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("CRESCENT_T_SET", "value", 1);
    setenv("CRESCENT_T_EMPTY", "", 1);
    setenv("CRESCENT_T_ADDR", "127.0.0.1:9009", 1);
    setenv("CRESCENT_T_NUM", "42", 1);
    unsetenv("CRESCENT_T_UNSET");
  }
  void TearDown() override {
    unsetenv("CRESCENT_T_SET");
    unsetenv("CRESCENT_T_EMPTY");
    unsetenv("CRESCENT_T_ADDR");
    unsetenv("CRESCENT_T_NUM");
  }
};

TEST_F(ConfigEnv, Interpolation) {
  EXPECT_EQ(callValues("interpolate", "plain"), "plain");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_SET}"), "value");
  EXPECT_EQ(callValues("interpolate", "a-${CRESCENT_T_SET}-b"), "a-value-b");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_SET}${CRESCENT_T_SET}"), "valuevalue");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_EMPTY}"), "");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_UNSET:-dflt}"), "dflt");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_EMPTY:-dflt}"), "dflt");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_SET:-dflt}"), "value");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_UNSET:-}"), "");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_SET:?needed}"), "value");
  EXPECT_EQ(callValues("interpolate", "$${CRESCENT_T_SET}"), "${CRESCENT_T_SET}");
  EXPECT_EQ(callValues("interpolate", "cost: $5"), "cost: $5");
  EXPECT_EQ(callValues("interpolate", "$"), "$");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_UNSET}"),
            "error: environment variable \"CRESCENT_T_UNSET\" is not set");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_EMPTY:?give it}"),
            "error: environment variable \"CRESCENT_T_EMPTY\" is not set: give it");
  EXPECT_EQ(callValues("interpolate", "${CRESCENT_T_UNSET:?}"),
            "error: environment variable \"CRESCENT_T_UNSET\" is not set");
  EXPECT_EQ(callValues("interpolate", "x${CRESCENT_T_SET"),
            "error: unterminated \"${\" in \"x${CRESCENT_T_SET\"");
  EXPECT_THAT(callValues("interpolate", "${1BAD}"),
              ::testing::StartsWith("error: invalid variable reference \"${1BAD}\""));
}

TEST_F(ConfigEnv, AppliesToEveryStringOfTheConfig) {
  auto l = loadConfig(R"(
global { maxconn = "${CRESCENT_T_NUM}", threads = "${CRESCENT_T_UNSET:-3}" }
frontend "${CRESCENT_T_SET}" {
  bind { "${CRESCENT_T_UNSET:-127.0.0.1:8080}" },
  timeout = { client = "${CRESCENT_T_UNSET:-45s}" },
  forwardfor = "${CRESCENT_T_UNSET:-true}",
  use_backend { "${CRESCENT_T_SET}", when = acl.path_beg("/${CRESCENT_T_SET}") },
  default_backend = "${CRESCENT_T_SET}",
}
backend "${CRESCENT_T_SET}" { server "s" { "${CRESCENT_T_ADDR}" } }
local plain = env("CRESCENT_T_SET")
local dflt = env("CRESCENT_T_UNSET", "fallback")
local none = env("CRESCENT_T_UNSET", nil)
assert(plain == "value" and dflt == "fallback" and none == nil)
)");
  ASSERT_TRUE(l.config) << l.error;
  const core::Config& c = *l.config;
  EXPECT_EQ(c.global.maxconn, 42);
  EXPECT_EQ(c.global.threads, 3);
  ASSERT_EQ(c.frontends.size(), 1u);
  EXPECT_EQ(c.frontends[0].name, "value");
  EXPECT_EQ(c.frontends[0].binds[0].text, "127.0.0.1:8080");
  EXPECT_EQ(c.frontends[0].timeout.client, 45000u);
  EXPECT_TRUE(c.frontends[0].forwardfor);
  EXPECT_EQ(c.frontends[0].use_backend[0].backend, "value");
  EXPECT_EQ(c.frontends[0].default_backend, "value");
  EXPECT_EQ(c.backends[0].servers[0].address.toString(), "127.0.0.1:9009");
}

TEST_F(ConfigEnv, PlainStringsAreNotNumbers) {
  // "${...}" may stand for a number; a literal "3" is a type error.
  EXPECT_EQ(loadConfig("backend \"b\" { retries = \"3\" }\n").error,
            "cfg.lua:1: backend \"b\": \"retries\" must be a number (got string)");
  EXPECT_EQ(loadConfig("backend \"b\" { retries = \"${CRESCENT_T_SET}\" }\n").error,
            "cfg.lua:1: backend \"b\": \"retries\" must be a number, got \"value\" "
            "(from ${CRESCENT_T_SET})");
}

TEST_F(ConfigEnv, ErrorsOnInterpolatedValuesNameTheVariables) {
  setenv("CRESCENT_T_THREADS", "2x", 1);
  // A type error shows the value and where it came from.
  EXPECT_EQ(loadConfig("global {\n  threads = \"${CRESCENT_T_THREADS}\",\n}\n").error,
            "cfg.lua:2: global: \"threads\" must be a number, got \"2x\" "
            "(from ${CRESCENT_T_THREADS})");
  // Every variable of the value, each once; a default that was used still names its variable.
  EXPECT_EQ(loadConfig("frontend \"f\" { bind { \":1\" },\n  forwardfor = "
                       "\"${CRESCENT_T_SET}:${CRESCENT_T_UNSET:-x}${CRESCENT_T_SET}\" }\n")
                .error,
            "cfg.lua:2: frontend \"f\": \"forwardfor\" must be a boolean, got \"value:xvalue\" "
            "(from ${CRESCENT_T_SET}, ${CRESCENT_T_UNSET})");
  // Nested keys, and errors other than the type: the same suffix.
  EXPECT_EQ(
      loadConfig("backend \"b\" { timeout = {\n  connect = \"${CRESCENT_T_THREADS}\" } }\n").error,
      "cfg.lua:2: backend \"b\": \"timeout.connect\": invalid duration \"2x\" (expected e.g. "
      "1500, \"1500ms\", \"5s\", \"1m30s\"; units ms, s, m, h, d) (from ${CRESCENT_T_THREADS})");
  EXPECT_EQ(loadConfig("global { threads = \"${CRESCENT_T_NUM}0000\" }\n").error,
            "cfg.lua:1: global: \"threads\" must be between 0 and 1024 (got 420000) "
            "(from ${CRESCENT_T_NUM})");
  EXPECT_EQ(loadConfig("defaults { mode = \"${CRESCENT_T_SET}\" }\n").error,
            "cfg.lua:1: defaults: \"mode\" must be \"http\" or \"tcp\" (got \"value\") "
            "(from ${CRESCENT_T_SET})");
  // Only the value that came through ${...} gets the suffix, not another key of the same
  // name at another depth.
  EXPECT_EQ(loadConfig("frontend \"f\" { bind { \":1\", tls = { cert = \"a.pem\", "
                       "min_version = \"1.9\",\n  certs = { { cert = \"b.pem\", "
                       "min_version = \"${CRESCENT_T_SET}\" } } } } }\n")
                .error,
            "cfg.lua:1: frontend \"f\": bind: \"tls.min_version\" must be \"1.0\", \"1.1\", "
            "\"1.2\" or \"1.3\" (got \"1.9\")");
  unsetenv("CRESCENT_T_THREADS");
}

TEST_F(ConfigEnv, UnsetVariableNamesTheLine) {
  EXPECT_EQ(loadConfig("backend \"b\" {\n  server \"s\" {\n    \"${CRESCENT_T_UNSET}\",\n  },\n}\n")
                .error,
            "cfg.lua:3: environment variable \"CRESCENT_T_UNSET\" is not set");
  EXPECT_EQ(
      loadConfig("defaults {\n  timeout = {\n    client = \"${CRESCENT_T_UNSET}\" } }\n").error,
      "cfg.lua:3: environment variable \"CRESCENT_T_UNSET\" is not set");
  EXPECT_EQ(loadConfig("\n\nlocal x = env(\"CRESCENT_T_UNSET\")\n").error,
            "cfg.lua:3: environment variable \"CRESCENT_T_UNSET\" is not set");
}

TEST(ConfigValues, DurationsAndSizesInTheDsl) {
  auto l = loadConfig(R"(
global { bufsize = "32k", hard_stop_after = "1m30s" }
defaults { timeout = { connect = 250, client = "1.5s", server = "2m", tunnel = "1d" } }
backend "b" { timeout = { queue = "100ms" } }
)");
  ASSERT_TRUE(l.config) << l.error;
  EXPECT_EQ(l.config->global.bufsize, 32768u);
  EXPECT_EQ(l.config->global.hard_stop_after, 90000u);
  const core::Timeouts& t = l.config->backends[0].timeout;
  EXPECT_EQ(t.connect, 250u);
  EXPECT_EQ(t.client, 1500u);
  EXPECT_EQ(t.server, 120000u);
  EXPECT_EQ(t.tunnel, 86400000u);
  EXPECT_EQ(t.queue, 100u);
}

}  // namespace
}  // namespace crescent::lua
