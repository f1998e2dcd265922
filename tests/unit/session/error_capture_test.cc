// ErrorCaptures and formatErrors: what `show errors` keeps and prints.

#include "core/session/error_capture.h"

#include <gtest/gtest.h>

#include <string>

namespace crescent::core {
namespace {

CapturedError request(const std::string& proxy) {
  CapturedError e;
  e.request = true;
  e.proxy = proxy;
  e.source = "127.0.0.1:5000";
  e.reason = "bare LF in head";
  e.status = 400;
  return e;
}

TEST(ErrorCaptures, OneSlotPerProxyAndKindTheLatestWins) {
  ErrorCaptures c;
  c.capture(request("a"), "first", 1);
  c.capture(request("b"), "other", 2);
  c.capture(request("a"), "second", 3);
  CapturedError resp = request("a");  // a backend named like the frontend: its own slot
  resp.request = false;
  c.capture(resp, "HTTP/1.1 x", 9);
  EXPECT_EQ(c.total(), 4u);
  auto all = c.snapshot("", "");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].proxy, "b");  // oldest first: b (event 1), a (event 2), backend a (3)
  EXPECT_EQ(all[1].excerpt, "second");
  EXPECT_EQ(all[1].event, 2u);
  EXPECT_EQ(c.snapshot("frontend", "a").size(), 1u);
  EXPECT_EQ(c.snapshot("backend", "").size(), 1u);
  EXPECT_TRUE(c.snapshot("frontend", "nope").empty());
  c.clear();
  EXPECT_EQ(c.total(), 0u);
  EXPECT_TRUE(c.snapshot("", "").empty());
}

TEST(ErrorCaptures, ExcerptIsAWindowAroundTheFault) {
  ErrorCaptures c;
  std::string msg(3000, 'a');
  msg[2000] = '\n';
  c.capture(request("f"), msg, 2000);
  CapturedError e = c.snapshot("", "")[0];
  EXPECT_EQ(e.length, 3000u);
  EXPECT_EQ(e.offset, 2000u);
  EXPECT_EQ(e.excerpt_at, 2000u - ErrorCaptures::kExcerpt);
  EXPECT_EQ(e.excerpt.size(), 2 * ErrorCaptures::kExcerpt);
  c.capture(request("f"), "short", 99);  // an offset past the end is clamped
  EXPECT_EQ(c.snapshot("", "")[0].offset, 5u);
}

TEST(ErrorCaptures, FormatEscapesAndNumbersTheLines) {
  ErrorCaptures c;
  const std::string msg = "GET / HTTP/1.1\r\nX: a\x01\\b\r\n";  // 25 bytes
  ASSERT_EQ(msg.size(), 25u);
  c.capture(request("web"), msg, 20);
  std::string out = formatErrors(c.snapshot("", ""), c.total());
  EXPECT_NE(out.find("Total events captured on ["), std::string::npos) << out;
  EXPECT_NE(out.find("] : 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("frontend web: invalid request\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  backend <NONE>, server <NONE>, event #0, src 127.0.0.1:5000\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("  status 400: bare LF in head, len 25, error at position 20\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("  00000  GET / HTTP/1.1\\r\\n\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  00016  X: a\\x01\\\\b\\r\\n\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("\n\n"), std::string::npos) << "an empty line would end the reply";
}

}  // namespace
}  // namespace crescent::core
