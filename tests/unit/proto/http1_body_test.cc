// BodyDecoder and message streams: bodies, pipelining and framing errors under every split.

#include <gtest/gtest.h>

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
using testing::StringSink;
using testing::Transcript;

TEST(Http1Body, PostWithContentLengthUnderEverySplit) {
  const std::string head =
      "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n";
  Transcript t = expectSplitInvariant(head + "hello world");
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 1u);
  const auto& m = t.messages[0];
  EXPECT_EQ(m.method, "POST");
  EXPECT_EQ(m.head_length, head.size());
  EXPECT_EQ(m.body, BodyKind::kContentLength);
  EXPECT_EQ(m.content_length, 11u);
  EXPECT_TRUE(m.expect_continue);
  EXPECT_EQ(m.body_bytes, 11u);
  EXPECT_EQ(m.payload, "hello world");
  EXPECT_TRUE(m.body_done);
}

TEST(Http1Body, ChunkedWithExtensionsAndTrailersUnderEverySplit) {
  const std::string head = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string body =
      "5;name=value;quoted=\"a b;c\"\r\nhello\r\n"
      "1A ; ext\r\nabcdefghijklmnopqrstuvwxyz\r\n"
      "0000000000000000000000000000000000000000003\r\nxyz\r\n"
      "0;last\r\n"
      "Checksum: abc\r\n"
      "X-Trailer:\tv  \r\n"
      "\r\n";
  const std::string in = head + body;
  Transcript t = expectSplitInvariant(in + "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 2u);
  const auto& m = t.messages[0];
  EXPECT_EQ(m.body, BodyKind::kChunked);
  EXPECT_EQ(m.body_bytes, body.size());
  EXPECT_EQ(m.payload, "helloabcdefghijklmnopqrstuvwxyzxyz");
  EXPECT_TRUE(m.body_done);
  EXPECT_EQ(t.messages[1].method, "GET");
}

// RFC 9110 §6.5.1: framing, routing, authentication and hop-by-hop fields are not
// forwarded from trailers; the rest are, values trimmed (issue 17 part 1).
TEST(Http1Body, ForbiddenTrailerFieldsAreDropped) {
  const std::string in =
      "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\n"
      "Checksum: abc \r\n"
      "Transfer-Encoding: chunked\r\n"
      "content-length: 5\r\n"
      "Host: evil.example\r\n"
      "Connection: close\r\n"
      "Authorization: Basic x\r\n"
      "Trailer: Checksum\r\n"
      "Content-Type: text/html\r\n"
      "X-Done:1\r\n"
      "\r\n"
      "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  Transcript t = expectSplitInvariant(in);
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 2u);
  using Fields = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(t.messages[0].trailers, (Fields{{"Checksum", "abc"}, {"X-Done", "1"}}));
  EXPECT_TRUE(t.messages[1].trailers.empty());
}

TEST(Http1Body, PipelinedRequestsUnderEverySplit) {
  const std::string in =
      "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "PUT /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
      "\r\n"  // an empty line between requests is skipped
      "DELETE /4 HTTP/1.0\r\n\r\n"
      "GET /5 HTTP/1.1\r\nHo";  // unfinished: stays in the buffer
  Transcript t = expectSplitInvariant(in);
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 4u);
  EXPECT_EQ(t.messages[0].target, "/1");
  EXPECT_EQ(t.messages[1].payload, "abc");
  EXPECT_EQ(t.messages[2].payload, "de");
  EXPECT_EQ(t.messages[2].body_bytes, 12u);  // "2\r\nde\r\n0\r\n\r\n"
  EXPECT_EQ(t.messages[3].method, "DELETE");
  EXPECT_FALSE(t.messages[3].keep_alive);
  EXPECT_EQ(t.leftover, "GET /5 HTTP/1.1\r\nHo");
}

TEST(Http1Body, ResponsesUnderEverySplit) {
  Options resp{.request = false};
  const std::string in =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "HTTP/1.0 200 OK\r\n\r\nuntil close";
  Transcript t = expectSplitInvariant(in, resp);
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 4u);
  EXPECT_EQ(t.messages[0].status, 100);
  EXPECT_EQ(t.messages[0].body, BodyKind::kNone);
  EXPECT_EQ(t.messages[1].payload, "ok");
  EXPECT_EQ(t.messages[2].payload, "abc");
  EXPECT_EQ(t.messages[3].body, BodyKind::kUntilClose);
  EXPECT_FALSE(t.messages[3].keep_alive);
  EXPECT_EQ(t.messages[3].payload, "until close");
  EXPECT_TRUE(t.messages[3].body_done);  // finish() at end of input completes it
}

TEST(Http1Body, TunnelBytesAreNotParsed) {
  Options connect{.request = false, .request_method = "CONNECT"};
  Transcript t = expectSplitInvariant(
      "HTTP/1.1 200 Connection Established\r\nContent-Length: 5\r\n\r\n\x16\x03\x01junk", connect);
  ASSERT_FALSE(t.error) << t;
  ASSERT_EQ(t.messages.size(), 1u);
  EXPECT_TRUE(t.messages[0].upgrade);
  EXPECT_EQ(t.messages[0].body, BodyKind::kNone);
  EXPECT_EQ(t.tunnel, "\x16\x03\x01junk");
}

struct Refused {
  const char* name;
  std::string input;
  int status;
  const char* stage;
};

void expectRefused(const Refused& c, const Options& opt = {}) {
  Transcript whole = runOneShot(c.input, opt);
  EXPECT_TRUE(whole.error) << c.name << ": " << whole;
  EXPECT_EQ(whole.status, c.status) << c.name << ": " << whole.reason;
  EXPECT_EQ(whole.stage, c.stage) << c.name << ": " << whole.reason;
  EXPECT_EQ(runBytewise(c.input, opt), whole) << c.name << " one byte at a time";
  for (size_t i = 0; i <= c.input.size(); ++i) {
    Transcript split = run(c.input, {i}, opt);
    EXPECT_EQ(split, whole) << c.name << " split at " << i;
    if (split != whole) break;
  }
}

std::string chunked(const std::string& body) {
  return "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body;
}

TEST(Http1Body, RefusesBadChunkFraming) {
  const Refused cases[] = {
      {"non-hex size", chunked("zz\r\n"), 400, "body"},
      {"empty size", chunked("\r\n"), 400, "body"},
      {"empty size before ext", chunked(";x\r\n"), 400, "body"},
      {"0x prefix", chunked("0x5\r\nhello\r\n0\r\n\r\n"), 400, "body"},
      {"negative", chunked("-5\r\n"), 400, "body"},
      {"plus", chunked("+5\r\n"), 400, "body"},
      {"leading space", chunked(" 5\r\n"), 400, "body"},
      {"space before CRLF", chunked("5 \r\nhello\r\n"), 400, "body"},
      {"space inside size", chunked("5 5\r\n"), 400, "body"},
      {"2^64 overflows", chunked("10000000000000000\r\n"), 400, "body"},
      {"2^63 overflows", chunked("8000000000000000\r\n"), 400, "body"},
      {"huge", chunked("ffffffffffffffffffff\r\n"), 400, "body"},
      {"bare LF after size", chunked("5\nhello\r\n0\r\n\r\n"), 400, "body"},
      {"bare CR after size", chunked("5\rhello\r\n"), 400, "body"},
      {"bare LF in extension", chunked("5;a\nb\r\nhello\r\n0\r\n\r\n"), 400, "body"},
      {"CTL in extension", chunked("5;a\x01\r\nhello\r\n"), 400, "body"},
      {"data too long", chunked("5\r\nhelloX\r\n0\r\n\r\n"), 400, "body"},
      {"LF without CR after data", chunked("5\r\nhello\n0\r\n\r\n"), 400, "body"},
      {"obs-fold in trailer", chunked("0\r\nA: b\r\n c\r\n\r\n"), 400, "body"},
      {"space before colon in trailer", chunked("0\r\nA : b\r\n\r\n"), 400, "body"},
      {"trailer without colon", chunked("0\r\nAb\r\n\r\n"), 400, "body"},
      {"CTL in trailer", chunked("0\r\nA: \x01\r\n\r\n"), 400, "body"},
      {"bare LF in trailer", chunked("0\r\nA: b\n\r\n"), 400, "body"},
      {"bare LF at end", chunked("0\r\n\n"), 400, "body"},
      {"long size line", chunked("5;" + std::string(5000, 'x') + "\r\n"), 400, "body"},
      {"long trailer line", chunked("0\r\nA: " + std::string(5000, 'x') + "\r\n\r\n"), 400, "body"},
      {"truncated chunked body", chunked("5\r\nhel"), 400, "body"},
      {"truncated content-length body",
       "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nshort", 400, "body"},
  };
  for (const Refused& c : cases) expectRefused(c);
}

TEST(Http1Body, LargestChunkSizeIsAccepted) {
  BodyDecoder d;
  d.reset(BodyKind::kChunked);
  std::string line = "7fffffffffffffff\r\nab";
  EXPECT_EQ(d.feed(line.data(), line.size()), line.size());
  EXPECT_EQ(d.state(), BodyDecoder::State::kBody);
  EXPECT_EQ(d.payloadBytes(), 2u);
}

TEST(Http1Body, EndlessTrailerSectionIsRefused) {
  BodyDecoder d;
  d.reset(BodyKind::kChunked);
  std::string in = "0\r\n";
  for (int i = 0; i < 2000; ++i) in += "X-Trailer: value\r\n";
  size_t n = d.feed(in.data(), in.size());
  EXPECT_EQ(d.state(), BodyDecoder::State::kError);
  EXPECT_LT(n, in.size());
  EXPECT_NE(d.error().reason.find("trailer"), std::string::npos);
}

TEST(Http1Body, FeedStopsAtTheEndOfTheBody) {
  BodyDecoder d;
  StringSink sink;
  d.reset(BodyKind::kContentLength, 3);
  std::string in = "abcNEXT";
  EXPECT_EQ(d.feed(in.data(), in.size(), &sink), 3u);
  EXPECT_TRUE(d.done());
  EXPECT_EQ(sink.data, "abc");
  EXPECT_EQ(d.feed(in.data(), in.size(), &sink), 0u);  // done: nothing more belongs to it

  d.reset(BodyKind::kChunked);
  in = "1\r\nx\r\n0\r\n\r\nNEXT";
  EXPECT_EQ(d.feed(in.data(), in.size()), in.size() - 4);
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.payloadBytes(), 1u);
}

TEST(Http1Body, NoneAndZeroLengthAreDoneAtOnce) {
  BodyDecoder d;
  d.reset(BodyKind::kNone);
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.feed("x", 1), 0u);
  d.reset(BodyKind::kContentLength, 0);
  EXPECT_TRUE(d.done());
  d.finish();
  EXPECT_TRUE(d.done());
}

TEST(Http1Body, UntilCloseEndsAtFinish) {
  BodyDecoder d;
  d.reset(BodyKind::kUntilClose);
  EXPECT_EQ(d.feed("abc", 3), 3u);
  EXPECT_EQ(d.state(), BodyDecoder::State::kBody);
  d.finish();
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.payloadBytes(), 3u);
}

TEST(Http1Body, ErrorCountsOnlyTheBytesBeforeIt) {
  BodyDecoder d;
  d.reset(BodyKind::kChunked);
  std::string in = "2\r\nab\r\nZ";
  EXPECT_EQ(d.feed(in.data(), in.size()), in.size() - 1);
  EXPECT_EQ(d.state(), BodyDecoder::State::kError);
  EXPECT_EQ(d.feed(in.data(), in.size()), 0u);
}

}  // namespace
}  // namespace crescent::core::http1
