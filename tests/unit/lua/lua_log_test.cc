// log.* from the config script and from hooks; LoadOptions::quiet.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "core/base/log.h"
#include "lua/hook_runner.h"
#include "tests/unit/lua/lua_test_util.h"

namespace crescent::lua {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Captures what is written to fd 2 while alive.
class StderrCapture {
 public:
  explicit StderrCapture(const std::string& file) : file_(file) {
    saved_ = dup(2);
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
  }
  std::string finish() {
    dup2(saved_, 2);
    close(saved_);
    std::ifstream in(file_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::string file_;
  int saved_;
};

const char* kScript = R"(
log.info("loading %s with %d servers", "cfg", 2)
log.warning("plain message")
frontend "f" {
  bind { ":1" },
  http_request = function(txn) log.error("from hook %s", txn.req.path) end,
}
)";

TEST(LuaLog, ConfigTimeAndHookLines) {
  core::setLogLevel(core::LogLevel::kInfo);
  testing::TempDir dir;
  std::string path = dir.write("cfg.lua", kScript);
  StderrCapture cap(dir.path() + "/stderr");
  auto st = ScriptState::load(path);
  ASSERT_TRUE(st.ok()) << st.message();
  std::string out = cap.finish();
  EXPECT_THAT(out, HasSubstr("loading cfg with 2 servers"));
  EXPECT_THAT(out, HasSubstr("plain message"));
}

TEST(LuaLog, QuietLoadDropsConfigTimeLinesOnly) {
  core::setLogLevel(core::LogLevel::kInfo);
  testing::TempDir dir;
  std::string path = dir.write("cfg.lua", kScript);
  StderrCapture cap(dir.path() + "/stderr");
  ScriptState::LoadOptions options;
  options.quiet = true;
  auto st = ScriptState::load(path, options);
  ASSERT_TRUE(st.ok()) << st.message();
  auto cfg = (*st)->buildConfig();
  ASSERT_TRUE(cfg.ok()) << cfg.message();
  HookRunner runner(std::move(*st));
  core::HttpHead req;
  req.method = "GET";
  req.target = "/logged";
  core::Address a = *core::Address::parse("127.0.0.1:1");
  core::RequestContext ctx{req, a, a, "f"};
  EXPECT_EQ(runner.runHttpRequest((*cfg)->frontends[0].http_request_hook, ctx).kind,
            core::HookDecision::Kind::kContinue);
  std::string out = cap.finish();
  EXPECT_THAT(out, Not(HasSubstr("loading cfg")));
  EXPECT_THAT(out, HasSubstr("from hook /logged"));
}

}  // namespace
}  // namespace crescent::lua
