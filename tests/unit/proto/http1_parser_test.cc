// HeadParser: valid heads under every split, and every refused shape with its status.

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/proto/http1.h"
#include "tests/unit/proto/http1_test_util.h"

namespace crescent::core::http1 {
namespace {

using testing::expectSplitInvariant;
using testing::Options;
using testing::run;
using testing::runBytewise;
using testing::runOneShot;
using testing::Transcript;

using Fields = std::vector<std::pair<std::string, std::string>>;

TEST(Http1Parser, GetWithSeveralHeadersUnderEverySplit) {
  const std::string in =
      "GET /a/b?x=1 HTTP/1.1\r\n"
      "Host: example.com\r\n"
      "User-Agent: curl/8.0\r\n"
      "Accept:*/*\r\n"
      "X-Spaces: \t  padded value \t \r\n"
      "X-Empty:\r\n"
      "X-Tab:\tv\r\n"
      "X-Utf8: caf\xc3\xa9\r\n"
      "\r\n";
  Transcript t = expectSplitInvariant(in);
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 1u);
  const auto& m = t.messages[0];
  EXPECT_EQ(m.method, "GET");
  EXPECT_EQ(m.target, "/a/b?x=1");
  EXPECT_EQ(m.version_minor, 1);
  EXPECT_EQ(m.head_length, in.size());
  EXPECT_EQ(m.headers, (Fields{{"Host", "example.com"},
                               {"User-Agent", "curl/8.0"},
                               {"Accept", "*/*"},
                               {"X-Spaces", "padded value"},
                               {"X-Empty", ""},
                               {"X-Tab", "v"},
                               {"X-Utf8", "caf\xc3\xa9"}}));
  EXPECT_EQ(m.body, BodyKind::kNone);
  EXPECT_TRUE(m.keep_alive);
  EXPECT_TRUE(m.body_done);
  EXPECT_TRUE(t.leftover.empty());
}

TEST(Http1Parser, ViewsPointIntoTheCallersBuffer) {
  const std::string buf = "GET / HTTP/1.1\r\nHost: h\r\n\r\nrest";
  HeadParser p;
  HttpHead head;
  Error err;
  ASSERT_EQ(p.parseRequest(buf, head, err), ParseResult::kComplete);
  EXPECT_EQ(p.headLength(), buf.size() - 4);
  EXPECT_EQ(head.method.data(), buf.data());
  EXPECT_EQ(head.headers[0].value.data(), buf.data() + 22);
  // Calling again without reset() reports the same completed head.
  EXPECT_EQ(p.parseRequest(buf, head, err), ParseResult::kComplete);
  EXPECT_EQ(p.headLength(), buf.size() - 4);
}

TEST(Http1Parser, BufferMayMoveBetweenCalls) {
  std::string first = "GET /moved HTTP/1.1\r\nHo";
  HeadParser p;
  HttpHead head;
  Error err;
  ASSERT_EQ(p.parseRequest(first, head, err), ParseResult::kIncomplete);
  std::string second = first + "st: h\r\n\r\n";  // a different allocation
  first.assign(first.size(), 'x');               // old bytes are gone
  ASSERT_EQ(p.parseRequest(second, head, err), ParseResult::kComplete);
  EXPECT_EQ(head.target, "/moved");
  EXPECT_EQ(head.target.data(), second.data() + 4);
}

TEST(Http1Parser, LeadingEmptyLinesAreSkippedAndCounted) {
  const std::string in = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
  Transcript t = expectSplitInvariant(in);
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_EQ(t.messages[0].method, "GET");
  EXPECT_EQ(t.messages[0].head_length, in.size());
}

TEST(Http1Parser, Http10RequestWithoutHost) {
  Transcript t = expectSplitInvariant("GET / HTTP/1.0\r\nUser-Agent: old\r\n\r\n");
  ASSERT_FALSE(t.error) << t;
  EXPECT_EQ(t.messages[0].version_minor, 0);
  EXPECT_FALSE(t.messages[0].keep_alive);
  t = expectSplitInvariant("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  ASSERT_FALSE(t.error) << t;
  EXPECT_TRUE(t.messages[0].keep_alive);
}

TEST(Http1Parser, RequestTargetForms) {
  const std::pair<const char*, const char*> cases[] = {
      {"GET", "/"},
      {"OPTIONS", "*"},
      {"GET", "http://a.example:8080/p?q"},
      {"CONNECT", "a.example:443"},
      {"GET", "/%7Efoo"},
      {"GET", "/caf\xc3\xa9"},
  };
  for (auto [method, target] : cases) {
    std::string in =
        std::string(method) + " " + target + " HTTP/1.1\r\nHost: a.example:8080\r\n\r\n";
    Transcript t = runOneShot(in);
    ASSERT_FALSE(t.error) << target << " " << t;
    EXPECT_EQ(t.messages[0].target, target);
  }
}

TEST(Http1Parser, StatusLines) {
  Options resp{.request = false};
  Transcript t = expectSplitInvariant("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", resp);
  ASSERT_FALSE(t.error) << t;
  EXPECT_EQ(t.messages[0].status, 200);
  EXPECT_EQ(t.messages[0].reason, "OK");
  t = runOneShot("HTTP/1.1 404 Not  Found\t(x)\r\nContent-Length: 0\r\n\r\n", resp);
  ASSERT_FALSE(t.error) << t;
  EXPECT_EQ(t.messages[0].reason, "Not  Found\t(x)");
  // An empty reason, with or without the SP before it.
  for (const char* line : {"HTTP/1.1 204 \r\n\r\n", "HTTP/1.1 204\r\n\r\n"}) {
    t = runOneShot(line, resp);
    ASSERT_FALSE(t.error) << line << t;
    EXPECT_EQ(t.messages[0].status, 204);
    EXPECT_EQ(t.messages[0].reason, "");
  }
}

// Each refused head, with the status the proxy answers. Checked one-shot, one byte at a
// time and at every two-piece split.
struct Refused {
  const char* name;
  std::string input;
  int status;
};

void expectRefused(const Refused& c, const Options& opt) {
  Transcript whole = runOneShot(c.input, opt);
  EXPECT_TRUE(whole.error) << c.name << ": " << whole;
  EXPECT_EQ(whole.status, c.status) << c.name << ": " << whole.reason;
  EXPECT_EQ(runBytewise(c.input, opt), whole) << c.name << " one byte at a time";
  for (size_t i = 0; i <= c.input.size(); ++i) {
    Transcript split = run(c.input, {i}, opt);
    EXPECT_EQ(split, whole) << c.name << " split at " << i;
    if (split != whole) break;
  }
}

const std::string kHost = "Host: h\r\n";

// A bare CR is refused as soon as the byte after it arrives: the client that sends one
// and waits gets its 400 now, not at the request timeout (issue 17).
TEST(Http1Parser, BareCrIsRefusedWithoutWaitingForTheHeadsEnd) {
  for (std::string in : {std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb"),
                         std::string("GET /\rx"), std::string("\r\n\rG")}) {
    HeadParser p;
    HttpHead head;
    Error err;
    EXPECT_EQ(p.parseRequest(in, head, err), ParseResult::kError) << in;
    EXPECT_EQ(err.status, 400);
    EXPECT_EQ(err.reason, "bare CR in head");
  }
  // A CR as the last byte so far may be followed by its LF.
  HeadParser p;
  HttpHead head;
  Error err;
  std::string in = "GET / HTTP/1.1\r";
  EXPECT_EQ(p.parseRequest(in, head, err), ParseResult::kIncomplete);
  in += "\nHost: h\r";
  EXPECT_EQ(p.parseRequest(in, head, err), ParseResult::kIncomplete);
  in += "\n\r\n";
  EXPECT_EQ(p.parseRequest(in, head, err), ParseResult::kComplete) << err.reason;
}

// A bare CR and a bare LF on one line: the CR comes first, so it is what every split of
// the input reports, the whole head at once as well as a byte at a time (found by
// tests/fuzz/http1_fuzz).
TEST(Http1Parser, BareCrBeforeABareLfIsReportedUnderEverySplit) {
  const std::string in = "GET / HTTP/1.1\r\nHost: exam\rm.\nAccept: */*\r\n\r\n";
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    HeadParser p;
    HttpHead head;
    Error err;
    ParseResult r = p.parseRequest(in.substr(0, cut), head, err);
    if (r == ParseResult::kIncomplete) r = p.parseRequest(in, head, err);
    ASSERT_EQ(r, ParseResult::kError) << cut;
    EXPECT_EQ(err.reason, "bare CR in head") << cut;
  }
}

// HAProxy's tune.http.maxhdr: 101 field lines by default; one more is a 400 (a 502 for a
// response), under every split of the input.
TEST(Http1Parser, FieldCountLimit) {
  auto request = [](int fields) {
    std::string in = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int i = 1; i < fields; ++i) in += "X-" + std::to_string(i) + ": v\r\n";
    return in + "\r\n";
  };
  Transcript ok = expectSplitInvariant(request(101));
  ASSERT_FALSE(ok.error) << ok;
  EXPECT_EQ(ok.messages[0].headers.size(), 101u);
  expectRefused({"102 fields", request(102), 400}, {});
  Options small{.max_fields = 3};
  EXPECT_FALSE(runOneShot(request(3), small).error);
  Transcript t = runOneShot(request(4), small);
  EXPECT_TRUE(t.error);
  EXPECT_EQ(t.reason, "too many header fields");
  std::string resp = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 102; ++i) resp += "X-" + std::to_string(i) + ": v\r\n";
  Transcript r = runOneShot(resp + "\r\n", {.request = false});
  EXPECT_TRUE(r.error);
  EXPECT_EQ(r.reason, "too many header fields");
}

TEST(Http1Parser, RefusesMalformedRequestHeads) {
  const Refused cases[] = {
      {"bare LF everywhere", "GET / HTTP/1.1\nHost: h\n\n", 400},
      {"bare LF after a field", "GET / HTTP/1.1\r\nHost: h\n\r\n", 400},
      {"bare LF as the final line", "GET / HTTP/1.1\r\nHost: h\r\n\n", 400},
      {"bare LF before request line", "\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400},
      {"bare CR in request line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
      {"obs-fold with tab", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400},
      {"whitespace before first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
      {"tab before colon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400},
      {"empty field name", "GET / HTTP/1.1\r\n" + kHost + ": v\r\n\r\n", 400},
      {"no colon", "GET / HTTP/1.1\r\n" + kHost + "NoColon\r\n\r\n", 400},
      {"paren in name", "GET / HTTP/1.1\r\n" + kHost + "X(y): v\r\n\r\n", 400},
      {"at sign in name", "GET / HTTP/1.1\r\n" + kHost + "X@y: v\r\n\r\n", 400},
      {"slash in name", "GET / HTTP/1.1\r\n" + kHost + "X/y: v\r\n\r\n", 400},
      {"non-ASCII name", "GET / HTTP/1.1\r\n" + kHost + "X\xc3\xa9: v\r\n\r\n", 400},
      {"CTL in name", "GET / HTTP/1.1\r\n" + kHost + "X\x01: v\r\n\r\n", 400},
      {"NUL in value", "GET / HTTP/1.1\r\n" + kHost + std::string("X: a\0b\r\n\r\n", 10), 400},
      {"CTL in value", "GET / HTTP/1.1\r\n" + kHost + "X: a\x01\r\n\r\n", 400},
      {"DEL in value", "GET / HTTP/1.1\r\n" + kHost + "X: a\x7f\r\n\r\n", 400},
      {"ESC in value", "GET / HTTP/1.1\r\n" + kHost + "X: \x1b[31m\r\n\r\n", 400},
      {"invalid method", "G(T / HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"leading space", " GET / HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"empty method", " / HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"empty target", "GET  HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"space in target", "GET /a b HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"tab in target", "GET /a\tb HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"CTL in target", "GET /a\x01 HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"DEL in target", "GET /a\x7f HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"two spaces", "GET /  HTTP/1.1\r\n" + kHost + "\r\n", 400},
      {"trailing space", "GET / HTTP/1.1 \r\n" + kHost + "\r\n", 400},
      {"missing version", "GET /\r\n" + kHost + "\r\n", 400},
      {"lowercase version", "GET / http/1.1\r\n" + kHost + "\r\n", 400},
      {"long minor", "GET / HTTP/1.10\r\n" + kHost + "\r\n", 400},
      {"HTTP/2.0", "GET / HTTP/2.0\r\n" + kHost + "\r\n", 505},
      {"HTTP/1.2", "GET / HTTP/1.2\r\n" + kHost + "\r\n", 505},
      {"HTTP/0.9", "GET / HTTP/0.9\r\n" + kHost + "\r\n", 505},
      {"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
  };
  for (const Refused& c : cases) expectRefused(c, {});
}

TEST(Http1Parser, RefusesMalformedStatusLines) {
  Options resp{.request = false};
  const Refused cases[] = {
      {"two digits", "HTTP/1.1 20 OK\r\n\r\n", 400},
      {"letters", "HTTP/1.1 abc OK\r\n\r\n", 400},
      {"four digits", "HTTP/1.1 2000 OK\r\n\r\n", 400},
      {"below 100", "HTTP/1.1 099 Odd\r\n\r\n", 400},
      {"two spaces", "HTTP/1.1  200 OK\r\n\r\n", 400},
      {"no status", "HTTP/1.1\r\n\r\n", 400},
      {"CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 400},
      {"version 2", "HTTP/2 200 OK\r\n\r\n", 400},
      {"version 1.2", "HTTP/1.2 200 OK\r\n\r\n", 505},
      {"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", 400},
      {"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", 400},
      {"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", 400},
  };
  for (const Refused& c : cases) expectRefused(c, resp);
}

// Values are checked eight bytes at a time; a bad byte must be found at any offset.
TEST(Http1Parser, ControlCharacterAtAnyOffsetOfALongValue) {
  for (char bad : {'\0', '\x01', '\x0b', '\x1f', '\x7f', '\r', '\n'}) {
    for (size_t at = 0; at < 40; ++at) {
      std::string value(40, 'v');
      value[at] = bad;
      std::string in = "GET / HTTP/1.1\r\nHost: h\r\nX: " + value + "\r\n\r\n";
      Transcript t = runOneShot(in);
      EXPECT_TRUE(t.error) << "byte " << int(bad) << " at " << at;
      EXPECT_EQ(t.status, 400);
    }
  }
  for (size_t at = 1; at < 39; ++at) {
    std::string value(40, 'v');
    value[at] = '\t';
    value[at / 2] = '\xff';
    std::string in = "GET / HTTP/1.1\r\nHost: h\r\nX: " + value + "\r\n\r\n";
    Transcript t = runOneShot(in);
    ASSERT_FALSE(t.error) << "tab at " << at << ": " << t;
    EXPECT_EQ(t.messages[0].headers[1].second, value);
  }
}

TEST(Http1Parser, OverlongHeads) {
  Options small{.max_head = 64};
  std::string long_line = "GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n";
  expectRefused({"long request line", long_line, 400}, small);
  std::string blank_lines(70, '\n');
  for (size_t i = 0; i < blank_lines.size(); i += 2) blank_lines[i] = '\r';
  expectRefused({"endless empty lines", blank_lines, 400}, small);
  std::string many_fields =
      "GET / HTTP/1.1\r\nHost: h\r\nX-A: " + std::string(60, 'v') + "\r\n\r\n";
  expectRefused({"long field section", many_fields, 400}, small);
  Options small_resp{.request = false, .max_head = 64};
  std::string resp = "HTTP/1.1 200 OK\r\nX: " + std::string(80, 'v') + "\r\n\r\n";
  expectRefused({"long response head", resp, 502}, small_resp);

  // Exactly max_head bytes is accepted.
  std::string exact = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  exact += std::string(64 - exact.size() - 4, 'v') + "\r\n\r\n";
  ASSERT_EQ(exact.size(), 64u);
  Transcript t = runOneShot(exact, small);
  EXPECT_FALSE(t.error) << t;
}

TEST(Http1Parser, ErrorIsStickyUntilReset) {
  HeadParser p;
  HttpHead head;
  Error err;
  std::string bad = "GET / HTTP/3.0\r\n";
  ASSERT_EQ(p.parseRequest(bad, head, err), ParseResult::kError);
  EXPECT_EQ(err.status, 505);
  Error again;
  EXPECT_EQ(p.parseRequest(bad + "Host: h\r\n\r\n", head, again), ParseResult::kError);
  EXPECT_EQ(again.status, 505);
  EXPECT_EQ(again.reason, err.reason);
  p.reset();
  EXPECT_EQ(p.parseRequest("GET / HTTP/1.1\r\nHost: h\r\n\r\n", head, err), ParseResult::kComplete);
}

TEST(Http1Parser, StartLineIsRefusedBeforeTheHeadEnds) {
  HeadParser p;
  HttpHead head;
  Error err;
  EXPECT_EQ(p.parseRequest("GET / HTTP/1.1\r\nHost: h\r\n", head, err), ParseResult::kIncomplete);
  p.reset();
  EXPECT_EQ(p.parseRequest("\x16\x03\x01 / HTTP/1.1\r\n", head, err), ParseResult::kError);
  EXPECT_EQ(err.status, 400);
}

// Feeding a large head one byte at a time must stay linear: the parser does not rescan.
TEST(Http1Parser, ByteAtATimeIsLinear) {
  std::string in = "GET / HTTP/1.1\r\nHost: h\r\n";
  while (in.size() < 900000) in += "X-Field-Name: some value of moderate length\r\n";
  in += "\r\n";
  HeadParser p(1 << 20, 1 << 20);
  HttpHead head;
  Error err;
  auto start = std::chrono::steady_clock::now();
  ParseResult r = ParseResult::kIncomplete;
  for (size_t i = 1; i <= in.size(); ++i) {
    r = p.parseRequest(std::string_view(in.data(), i), head, err);
    if (r != ParseResult::kIncomplete) break;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r, ParseResult::kComplete) << err.reason;
  EXPECT_EQ(p.headLength(), in.size());
  EXPECT_GT(head.headers.size(), 19000u);
  EXPECT_LT(seconds, 5.0);  // quadratic rescanning would take minutes
}

// The offset of a refusal (show errors' "error at position") is the first bad byte, the
// same whether the head arrives at once or a byte at a time.
TEST(Http1Parser, RefusalNamesTheByteAtFault) {
  struct Case {
    std::string in;
    size_t offset;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", 28},  // the space in the name
      {"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 23},           // the bare LF
      {"G(T / HTTP/1.1\r\n\r\n", 1},                             // the bad method byte
      {"GET / HTTP/2.5\r\n\r\n", 6},                             // the version
      {"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 20},               // the control byte
      {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 20},                 // the bare CR
  };
  for (const Case& c : cases) {
    for (bool bytewise : {false, true}) {
      HeadParser p;
      HttpHead head;
      Error err;
      ParseResult r = ParseResult::kIncomplete;
      if (bytewise) {
        for (size_t n = 1; n <= c.in.size() && r == ParseResult::kIncomplete; ++n)
          r = p.parseRequest(std::string_view(c.in).substr(0, n), head, err);
      } else {
        r = p.parseRequest(c.in, head, err);
      }
      ASSERT_EQ(r, ParseResult::kError) << c.in;
      EXPECT_EQ(err.offset, c.offset)
          << c.in << " (" << err.reason << ")" << (bytewise ? " bytewise" : "");
    }
  }
}

}  // namespace
}  // namespace crescent::core::http1
