// analyzeRequest / analyzeResponse, hop-by-hop fields and serialization.

#include <gtest/gtest.h>

#include <string>

#include "core/proto/http1.h"
#include "tests/unit/proto/http1_test_util.h"

namespace crescent::core::http1 {
namespace {

using testing::expectSplitInvariant;
using testing::Options;
using testing::runBytewise;
using testing::runOneShot;
using testing::Transcript;

HttpHead parsed(const std::string& buf, bool request = true) {
  HeadParser p;
  HttpHead head;
  Error err;
  ParseResult r = request ? p.parseRequest(buf, head, err) : p.parseResponse(buf, head, err);
  EXPECT_EQ(r, ParseResult::kComplete) << err.reason;
  return head;
}

Framing request(const std::string& fields, const char* line = "POST / HTTP/1.1") {
  static std::string buf;  // the head's views point into it
  buf = std::string(line) + "\r\n" + fields + "\r\n";
  HttpHead h = parsed(buf);
  Framing f;
  Error err;
  EXPECT_TRUE(analyzeRequest(h, f, err)) << fields << ": " << err.reason;
  return f;
}

Error refusedRequest(const std::string& fields, const char* line = "POST / HTTP/1.1") {
  std::string buf = std::string(line) + "\r\n" + fields + "\r\n";
  HttpHead h = parsed(buf);
  Framing f;
  Error err;
  EXPECT_FALSE(analyzeRequest(h, f, err)) << fields;
  // The same refusal one byte at a time, through the whole pipeline.
  Transcript t = runBytewise(buf);
  EXPECT_TRUE(t.error) << fields;
  EXPECT_EQ(t.status, err.status) << fields;
  EXPECT_EQ(t.stage, "analyze") << fields;
  return err;
}

Framing response(const std::string& head, std::string_view method = "GET") {
  static std::string buf;
  buf = head;
  HttpHead h = parsed(buf, false);
  Framing f;
  Error err;
  EXPECT_TRUE(analyzeResponse(h, method, f, err)) << head << ": " << err.reason;
  return f;
}

TEST(Http1Framing, RequestContentLength) {
  Framing f = request("Host: h\r\nContent-Length: 42\r\n");
  EXPECT_EQ(f.body, BodyKind::kContentLength);
  EXPECT_EQ(f.content_length, 42u);
  f = request("Host: h\r\nContent-Length: 7\r\ncontent-length: 7\r\nContent-Length: 007\r\n");
  EXPECT_EQ(f.content_length, 7u);
  f = request("Host: h\r\nContent-Length: 9223372036854775807\r\n");
  EXPECT_EQ(f.content_length, 9223372036854775807u);
  f = request("Host: h\r\nContent-Length: 0\r\n");
  EXPECT_EQ(f.body, BodyKind::kContentLength);
  EXPECT_EQ(f.content_length, 0u);
  f = request("Host: h\r\n", "GET / HTTP/1.1");
  EXPECT_EQ(f.body, BodyKind::kNone);
}

TEST(Http1Framing, RefusesSmugglingShapes) {
  struct Case {
    std::string fields;
    int status;
    const char* line = "POST / HTTP/1.1";
  };
  const Case cases[] = {
      {"Host: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400},
      {"Host: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n", 400},
      {"Host: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n", 400},
      {"Host: h\r\nContent-Length: 5, 5\r\n", 400},
      {"Host: h\r\nContent-Length: +5\r\n", 400},
      {"Host: h\r\nContent-Length: -1\r\n", 400},
      {"Host: h\r\nContent-Length: 0x10\r\n", 400},
      {"Host: h\r\nContent-Length: 5 5\r\n", 400},
      {"Host: h\r\nContent-Length:\r\n", 400},
      {"Host: h\r\nContent-Length: 1e3\r\n", 400},
      {"Host: h\r\nContent-Length: 9223372036854775808\r\n", 400},
      {"Host: h\r\nContent-Length: 99999999999999999999999\r\n", 400},
      {"Host: h\r\nTransfer-Encoding: gzip\r\n", 501},
      {"Host: h\r\nTransfer-Encoding: identity\r\n", 501},
      {"Host: h\r\nTransfer-Encoding: gzip, chunked\r\n", 501},
      {"Host: h\r\nTransfer-Encoding: chunked, gzip\r\n", 400},
      {"Host: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", 400},
      {"Host: h\r\nTransfer-Encoding: chunked, chunked\r\n", 400},
      {"Host: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400},
      {"Host: h\r\nTransfer-Encoding: , ,\r\n", 400},
      {"Host: h\r\nTransfer-Encoding:\r\n", 400},
      {"Host: h\r\nTransfer-Encoding: xchunked\r\n", 501},
      {"Host: h\r\nTransfer-Encoding: chunked;q=1\r\n", 501},
      {"Transfer-Encoding: chunked\r\n", 400, "POST / HTTP/1.0"},
      {"Host: h\r\nTransfer-Encoding: chunked\r\n", 400, "POST / HTTP/1.0"},
      {"User-Agent: x\r\n", 400, "GET / HTTP/1.1"},
      {"Host: a\r\nHost: b\r\n", 400, "GET / HTTP/1.1"},
      {"Host: a\r\nhost: a\r\n", 400, "GET / HTTP/1.1"},
      {"Host: a\r\nHost: b\r\n", 400, "GET / HTTP/1.0"},
  };
  for (const Case& c : cases) {
    Error err = refusedRequest(c.fields, c.line);
    EXPECT_EQ(err.status, c.status) << c.fields << ": " << err.reason;
    EXPECT_FALSE(err.reason.empty());
  }
}

// RFC 9112 §3.2: the request-target's forms, and Host as a reg-name or IP literal with a
// port (issue 17 part 1). Each input is the exact bytes of the issue where it names one.
TEST(Http1Framing, RefusesBadTargetsAndHosts) {
  struct Case {
    const char* line;
    std::string fields;
  };
  const Case cases[] = {
      {"GET admin HTTP/1.1", "Host: h\r\n"},  // origin-form must start with "/"
      {"GET * HTTP/1.1", "Host: h\r\n"},      // "*" is for OPTIONS only
      {"GET /a#frag HTTP/1.1", "Host: h\r\n"},
      {"GET http://h/a#frag HTTP/1.1", "Host: h\r\n"},
      {"GET http://user@evil.example/ HTTP/1.1", "Host: h\r\n"},
      {"GET http:///a HTTP/1.1", "Host: h\r\n"},
      {"GET ftp://h/a HTTP/1.1", "Host: h\r\n"},
      {"GET h.example:80 HTTP/1.1", "Host: h\r\n"},  // authority-form is CONNECT's
      {"CONNECT h.example HTTP/1.1", "Host: h\r\n"},
      {"CONNECT /a HTTP/1.1", "Host: h\r\n"},
      {"CONNECT h.example:99999 HTTP/1.1", "Host: h\r\n"},
      {"GET / HTTP/1.1", "Host: a/b?c@d\r\n"},
      {"GET / HTTP/1.1", "Host: a, b\r\n"},
      {"GET / HTTP/1.1", "Host: a:b\r\n"},
      {"GET / HTTP/1.1", "Host: a:65536\r\n"},
      {"GET / HTTP/1.1", "Host: [::1\r\n"},
      {"GET / HTTP/1.1", "Host: a%zz\r\n"},
      {"GET / HTTP/1.1", "Host: a\\b\r\n"},
  };
  for (const Case& c : cases) {
    Error err = refusedRequest(c.fields, c.line);
    EXPECT_EQ(err.status, 400) << c.line << " " << c.fields;
  }
  for (const char* host : {"a.example", "a.example:8080", "127.0.0.1:80", "[::1]:443",
                           "[2001:db8::7]", "xn--caf-dma.example", "a%41b", "h:", ""}) {
    Framing f = request(std::string("Host: ") + host + "\r\n", "GET / HTTP/1.1");
    EXPECT_EQ(f.body, BodyKind::kNone) << host;
  }
  request("Host: h\r\n", "OPTIONS * HTTP/1.1");
  request("Host: h\r\n", "CONNECT h.example:443 HTTP/1.1");
}

// RFC 9112 §3.2.2: with an absolute-form target, Host becomes the target's authority, so
// an ACL on Host and the server agree on the host (issue 17 part 1).
TEST(Http1Framing, AbsoluteFormReplacesHost) {
  Transcript t = expectSplitInvariant(
      "GET http://evil.example/admin HTTP/1.1\r\nHost: good.example\r\nX: y\r\n\r\n"
      "GET HTTPS://b.example:8443?q HTTP/1.0\r\n\r\n");
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 2u);
  using Fields = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(t.messages[0].headers, (Fields{{"Host", "evil.example"}, {"X", "y"}}));
  EXPECT_EQ(t.messages[0].target, "http://evil.example/admin");
  EXPECT_EQ(t.messages[1].headers, (Fields{{"Host", "b.example:8443"}}));  // added
}

TEST(Http1Framing, ChunkedCaseInsensitiveWithOws) {
  Framing f = request("Host: h\r\nTransfer-Encoding:  CHUNKED \r\n");
  EXPECT_EQ(f.body, BodyKind::kChunked);
  f = request("Host: h\r\nTransfer-Encoding: ,chunked,\r\n");
  EXPECT_EQ(f.body, BodyKind::kChunked);
}

TEST(Http1Framing, RequestKeepAliveUpgradeAndExpect) {
  EXPECT_TRUE(request("Host: h\r\n").keep_alive);
  EXPECT_FALSE(request("Host: h\r\nConnection: close\r\n").keep_alive);
  EXPECT_FALSE(request("Host: h\r\nConnection: keep-alive\r\nConnection: Close\r\n").keep_alive);
  EXPECT_FALSE(request("", "GET / HTTP/1.0").keep_alive);
  EXPECT_TRUE(request("Connection: keep-alive\r\n", "GET / HTTP/1.0").keep_alive);

  Framing ws = request("Host: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n",
                       "GET /ws HTTP/1.1");
  EXPECT_TRUE(ws.upgrade);
  EXPECT_FALSE(request("Host: h\r\nUpgrade: websocket\r\n", "GET / HTTP/1.1").upgrade);
  EXPECT_FALSE(request("Host: h\r\nConnection: upgrade\r\n", "GET / HTTP/1.1").upgrade);
  EXPECT_FALSE(request("Connection: upgrade\r\nUpgrade: websocket\r\n", "GET / HTTP/1.0").upgrade);
  EXPECT_TRUE(request("Host: a:443\r\n", "CONNECT a:443 HTTP/1.1").upgrade);

  EXPECT_TRUE(request("Host: h\r\nExpect: 100-Continue\r\n").expect_continue);
  EXPECT_FALSE(request("Host: h\r\n").expect_continue);
  EXPECT_FALSE(request("Expect: 100-continue\r\n", "POST / HTTP/1.0").expect_continue);
}

TEST(Http1Framing, ResponseFraming) {
  Framing f = response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
  EXPECT_EQ(f.body, BodyKind::kContentLength);
  EXPECT_TRUE(f.keep_alive);

  f = response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD");
  EXPECT_EQ(f.body, BodyKind::kNone);
  EXPECT_TRUE(f.keep_alive);
  f = response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD");
  EXPECT_EQ(f.body, BodyKind::kNone);

  for (const char* h : {"HTTP/1.1 204 No Content\r\n\r\n",
                        "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
                        "HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\n\r\n"}) {
    f = response(h);
    EXPECT_EQ(f.body, BodyKind::kNone) << h;
    EXPECT_TRUE(f.keep_alive) << h;
    EXPECT_FALSE(f.upgrade) << h;
  }

  f = response(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_TRUE(f.upgrade);
  EXPECT_EQ(f.body, BodyKind::kNone);

  f = response("HTTP/1.1 200 Connection established\r\nTransfer-Encoding: chunked\r\n\r\n",
               "CONNECT");
  EXPECT_TRUE(f.upgrade);
  EXPECT_EQ(f.body, BodyKind::kNone);
  f = response("HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n", "CONNECT");
  EXPECT_FALSE(f.upgrade);
  EXPECT_EQ(f.body, BodyKind::kContentLength);

  f = response("HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(f.body, BodyKind::kUntilClose);
  EXPECT_FALSE(f.keep_alive);
  f = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
  EXPECT_FALSE(f.keep_alive);
  f = response("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n");
  EXPECT_TRUE(f.keep_alive);
  f = response("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n");
  EXPECT_FALSE(f.keep_alive);
  f = response("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(f.body, BodyKind::kChunked);
  EXPECT_FALSE(f.keep_alive);
}

TEST(Http1Framing, RefusesBadResponseFraming) {
  for (const char* h :
       {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"}) {
    std::string buf = h;
    HttpHead head = parsed(buf, false);
    Framing f;
    Error err;
    EXPECT_FALSE(analyzeResponse(head, "GET", f, err)) << h;
    EXPECT_EQ(err.status, 400) << h;
    Transcript t = runBytewise(buf, Options{.request = false});
    EXPECT_TRUE(t.error);
    EXPECT_EQ(t.stage, "analyze");
  }
}

TEST(Http1Framing, HasToken) {
  EXPECT_TRUE(hasToken("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(hasToken(" close ,x", "close"));
  EXPECT_TRUE(hasToken("a,\tb\t,c", "b"));
  EXPECT_FALSE(hasToken("closed", "close"));
  EXPECT_FALSE(hasToken("", "close"));
  EXPECT_FALSE(hasToken(",,", "close"));
  EXPECT_FALSE(hasToken("clo se", "close"));
}

TEST(Http1Framing, RemoveHopByHop) {
  std::string buf =
      "GET / HTTP/1.1\r\n"
      "Host: h\r\n"
      "Connection: keep-alive, X-Secret, Upgrade\r\n"
      "Connection: x-other, Content-Length, Transfer-Encoding, Host\r\n"
      "X-Secret: 1\r\n"
      "x-secret: 2\r\n"
      "X-Other: 3\r\n"
      "X-Kept: 4\r\n"
      "Keep-Alive: timeout=5\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "TE: trailers\r\n"
      "Upgrade: websocket\r\n"
      "Content-Length: 0\r\n"
      "Transfer-Encoding: chunked\r\n"
      "\r\n";
  HttpHead h = parsed(buf);
  removeHopByHop(h, false);
  std::vector<std::string_view> names;
  for (const auto& f : h.headers) names.push_back(f.name);
  EXPECT_EQ(names, (std::vector<std::string_view>{"Host", "X-Kept", "Content-Length",
                                                  "Transfer-Encoding"}));

  h = parsed(buf);
  removeHopByHop(h, true);
  EXPECT_NE(h.find("Upgrade"), nullptr);
  EXPECT_EQ(h.find("Connection"), nullptr);
  EXPECT_EQ(h.find("X-Secret"), nullptr);
}

TEST(Http1Serialize, RequestRoundTrip) {
  const std::string in =
      "POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-Empty: \r\n\r\n";
  HttpHead h = parsed(in);
  std::string out;
  serializeRequestHead(h, out);
  EXPECT_EQ(out, in);

  h.version_minor = 0;
  h.set("X-Added", "yes");
  out = "prefix:";
  serializeRequestHead(h, out);
  EXPECT_EQ(out,
            "prefix:POST /p?q=1 HTTP/1.0\r\nHost: h\r\nContent-Length: 3\r\nX-Empty: \r\n"
            "X-Added: yes\r\n\r\n");
}

TEST(Http1Serialize, ResponseRoundTripAndReasons) {
  const std::string in = "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n";
  HttpHead h = parsed(in, false);
  std::string out;
  serializeResponseHead(h, out);
  EXPECT_EQ(out, in);

  HttpHead r;
  r.status = 503;
  r.add("Retry-After", "5");
  out.clear();
  serializeResponseHead(r, out);
  EXPECT_EQ(out, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n");
  r.status = 599;
  out.clear();
  serializeResponseHead(r, out);
  EXPECT_EQ(out, "HTTP/1.1 599 \r\nRetry-After: 5\r\n\r\n");
  // What we write, we parse back the same.
  Transcript t = expectSplitInvariant(out, Options{.request = false});
  ASSERT_FALSE(t.error) << t;
  EXPECT_EQ(t.messages[0].status, 599);

  EXPECT_EQ(reasonPhrase(200), "OK");
  EXPECT_EQ(reasonPhrase(400), "Bad Request");
  EXPECT_EQ(reasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reasonPhrase(299), "");
}

TEST(Http1Serialize, ParsedThenSerializedThenParsedIsStable) {
  const std::string in = "\r\nGET  /x HTTP/1.1\r\n";  // refused: double space
  EXPECT_TRUE(runOneShot(in + "Host: h\r\n\r\n").error);
  const std::string ok = "GET /x HTTP/1.1\r\nHost:   h  \r\nA:b\r\n\r\n";
  HttpHead h = parsed(ok);
  std::string once;
  serializeRequestHead(h, once);
  EXPECT_EQ(once, "GET /x HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n");
  HttpHead again = parsed(once);
  std::string twice;
  serializeRequestHead(again, twice);
  EXPECT_EQ(twice, once);
}

}  // namespace
}  // namespace crescent::core::http1
