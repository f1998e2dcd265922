// Diagnostic log lines (core/base/log.h) and the dates they carry (core/base/wall_clock.h).

#include "core/base/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <regex>
#include <string>

#include "core/base/wall_clock.h"

namespace crescent::core {
namespace {

std::string iso(uint64_t epoch_ms) {
  std::string out;
  appendDate(out, epoch_ms, DateFormat::kIso8601Utc);
  return out;
}

TEST(WallClock, Iso8601UtcWithMilliseconds) {
  EXPECT_EQ(iso(1796691723456), "2026-12-08T01:02:03.456Z");
  // The same second again (the cached text), then the next one.
  EXPECT_EQ(iso(1796691723999), "2026-12-08T01:02:03.999Z");
  EXPECT_EQ(iso(1796691724000), "2026-12-08T01:02:04.000Z");
  EXPECT_EQ(iso(951782400007), "2000-02-29T00:00:00.007Z");
  EXPECT_EQ(iso(0), "1970-01-01T00:00:00.000Z");
}

TEST(WallClock, FormatsKeepSeparateCaches) {
  std::string out;
  appendDate(out, 1796691723456, DateFormat::kHaproxy);
  // HAProxy's date is local time: only its shape is fixed here.
  EXPECT_TRUE(std::regex_match(out, std::regex(R"(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d\.456)")))
      << out;
  EXPECT_EQ(iso(1796691723456), "2026-12-08T01:02:03.456Z");
  std::string again;
  appendDate(again, 1796691723456, DateFormat::kHaproxy);
  EXPECT_EQ(again, out);
}

TEST(Log, LineStartsWithTheUtcDate) {
  setLogLevel(LogLevel::kInfo);
  uint64_t before = wallClockMs();
  testing::internal::CaptureStderr();
  logWarning("backend \"{}\": {}", "app", "something odd");
  logDebug("not shown at level info");
  std::string out = testing::internal::GetCapturedStderr();
  uint64_t after = wallClockMs();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(
      out, m,
      std::regex(R"((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) crescent\[(\d+)\]: warning: )"
                 R"(backend "app": something odd\n)")))
      << out;
  EXPECT_EQ(m[2].str(), std::to_string(::getpid()));
  // The date is the time of the call (compared as text: same width, so ordered).
  EXPECT_LE(iso(before), m[1].str());
  EXPECT_GE(iso(after), m[1].str());
}

}  // namespace
}  // namespace crescent::core
