// Response compression: Accept-Encoding negotiation, the decision rules, the head edits,
// and the streaming encoder (round trips through zlib's inflate, under random splits).

#include "core/filters/compression.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>
#include <string>
#include <vector>

namespace crescent::core::compression {
namespace {

const std::vector<std::string> kGzipFirst{"gzip", "deflate"};
const std::vector<std::string> kDeflateFirst{"deflate", "gzip"};

// ---------------------------------------------------------------- negotiation

TEST(CompressionNegotiate, PlainListsAndCase) {
  EXPECT_EQ(negotiate("gzip", kGzipFirst), Algo::kGzip);
  EXPECT_EQ(negotiate("deflate", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("GZip", kGzipFirst), Algo::kGzip);
  EXPECT_EQ(negotiate("DEFLATE", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("br", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("x-gzip", kGzipFirst), Algo::kGzip);
  EXPECT_EQ(negotiate("", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("identity", kGzipFirst), Algo::kNone);
  // Both acceptable at the same weight: the server's order decides.
  EXPECT_EQ(negotiate("gzip, deflate, br", kGzipFirst), Algo::kGzip);
  EXPECT_EQ(negotiate("gzip, deflate, br", kDeflateFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("deflate, gzip", kGzipFirst), Algo::kGzip);
}

TEST(CompressionNegotiate, OnlyConfiguredAlgos) {
  EXPECT_EQ(negotiate("deflate", {"gzip"}), Algo::kNone);
  EXPECT_EQ(negotiate("gzip, deflate", {"deflate"}), Algo::kDeflate);
  EXPECT_EQ(negotiate("gzip", {"zstd", "gzip"}), Algo::kGzip);  // unknown names skipped
  EXPECT_EQ(negotiate("gzip", {}), Algo::kNone);
}

TEST(CompressionNegotiate, QValues) {
  EXPECT_EQ(negotiate("gzip;q=0.5, deflate", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("gzip;q=1.0, deflate;q=0.999", kDeflateFirst), Algo::kGzip);
  EXPECT_EQ(negotiate("gzip;q=0.001", kGzipFirst), Algo::kGzip);
  EXPECT_EQ(negotiate("deflate;q=0.5, gzip;q=0.5", kDeflateFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("gzip;Q=0.2, deflate;q=0.1", kDeflateFirst), Algo::kGzip);
  // Spaces around ';' and '=' and around elements; empty list elements.
  EXPECT_EQ(negotiate("  gzip ; q=0.3 ,, deflate\t;\tq = 0.7 ,", kGzipFirst), Algo::kDeflate);
  // Other parameters are ignored.
  EXPECT_EQ(negotiate("gzip;level=9;q=0.4, deflate;q=0.2", kDeflateFirst), Algo::kGzip);
}

TEST(CompressionNegotiate, QZeroMeansNotAcceptable) {
  EXPECT_EQ(negotiate("gzip;q=0", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("gzip;q=0.000", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("gzip;q=0, deflate", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("deflate;q=0, gzip;q=0", kGzipFirst), Algo::kNone);
  // The first element for a coding counts.
  EXPECT_EQ(negotiate("gzip;q=0, gzip", kGzipFirst), Algo::kNone);
}

TEST(CompressionNegotiate, Star) {
  EXPECT_EQ(negotiate("*", kGzipFirst), Algo::kGzip);
  EXPECT_EQ(negotiate("*", kDeflateFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("*;q=0", kGzipFirst), Algo::kNone);
  // Named codings keep their own weight; * covers the others.
  EXPECT_EQ(negotiate("gzip;q=0, *", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("*;q=0.5, deflate", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("*;q=0, gzip", kDeflateFirst), Algo::kGzip);
  EXPECT_EQ(negotiate("identity, *;q=0", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("identity;q=0, gzip", kGzipFirst), Algo::kGzip);
}

TEST(CompressionNegotiate, InvalidElementsIgnored) {
  EXPECT_EQ(negotiate("gz ip", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("g(z)ip, deflate", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("gzip;q=2", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("gzip;q=1.5", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("gzip;q=0.5555", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate("gzip;q=abc, deflate;q=0.1", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("gzip;q=, deflate;q=0.1", kGzipFirst), Algo::kDeflate);
  EXPECT_EQ(negotiate("gzip;q=.5", kGzipFirst), Algo::kNone);
  EXPECT_EQ(negotiate(";q=1, deflate", kGzipFirst), Algo::kDeflate);
  // An ignored invalid element does not hide a later valid one for the same coding.
  EXPECT_EQ(negotiate("gzip;q=9, gzip;q=0.5", kGzipFirst), Algo::kGzip);
}

TEST(CompressionNegotiate, SeveralFieldsAndNoField) {
  HttpHead req;
  req.method = "GET";
  req.target = "/";
  EXPECT_EQ(negotiate(req, kGzipFirst), Algo::kNone);  // no field: no compression
  req.add("Accept-Encoding", "br");
  req.add("accept-encoding", "deflate;q=0.5");
  EXPECT_EQ(negotiate(req, kGzipFirst), Algo::kDeflate);
  req.add("ACCEPT-ENCODING", "gzip");
  EXPECT_EQ(negotiate(req, kGzipFirst), Algo::kGzip);
}

// ---------------------------------------------------------------- decision

struct DecideCase {
  CompressionConfig cfg;
  RequestFacts req{Algo::kGzip, false, false};
  HttpHead resp;
  http1::Framing framing;

  DecideCase() {
    cfg.enabled = true;
    resp.status = 200;
    resp.add("Content-Type", "text/html; charset=utf-8");
    resp.add("Content-Length", "5000");
    framing.body = http1::BodyKind::kContentLength;
    framing.content_length = 5000;
  }
  Verdict run() const { return decide(cfg, req, resp, framing); }
};

TEST(CompressionDecide, CompressesAPlainHtml200) {
  DecideCase c;
  EXPECT_EQ(c.run(), Verdict::kCompress);
  c.framing.body = http1::BodyKind::kChunked;  // unknown length
  EXPECT_EQ(c.run(), Verdict::kCompress);
  c.framing.body = http1::BodyKind::kUntilClose;
  EXPECT_EQ(c.run(), Verdict::kCompress);
}

TEST(CompressionDecide, NotAcceptedComesLast) {
  DecideCase c;
  c.req.accepted = Algo::kNone;
  EXPECT_EQ(c.run(), Verdict::kNotAccepted);
  EXPECT_EQ(verdictName(c.run()), "not-accepted");
  c.resp.status = 404;
  EXPECT_EQ(c.run(), Verdict::kStatus);
}

TEST(CompressionDecide, NoBody) {
  DecideCase head;
  head.req.head = true;
  EXPECT_EQ(head.run(), Verdict::kNoBody);
  DecideCase none;
  none.framing.body = http1::BodyKind::kNone;
  EXPECT_EQ(none.run(), Verdict::kNoBody);
  DecideCase zero;
  zero.framing.content_length = 0;
  zero.cfg.min_size = 0;
  EXPECT_EQ(zero.run(), Verdict::kNoBody);
  DecideCase tunnel;
  tunnel.framing.upgrade = true;
  EXPECT_EQ(tunnel.run(), Verdict::kNoBody);
}

TEST(CompressionDecide, OnlyStatus200) {
  for (int status : {201, 203, 206, 301, 404, 500}) {
    DecideCase c;
    c.resp.status = status;
    EXPECT_EQ(c.run(), Verdict::kStatus) << status;
  }
  for (int status : {100, 204, 304}) {
    DecideCase c;
    c.resp.status = status;
    c.framing.body = http1::BodyKind::kNone;  // as analyzeResponse says for them
    EXPECT_EQ(c.run(), Verdict::kNoBody) << status;
  }
}

TEST(CompressionDecide, Ranges) {
  DecideCase req;
  req.req.range = true;
  EXPECT_EQ(req.run(), Verdict::kRange);
  DecideCase resp;
  resp.resp.add("Content-Range", "bytes 0-99/5000");
  EXPECT_EQ(resp.run(), Verdict::kRange);
}

TEST(CompressionDecide, AlreadyEncoded) {
  DecideCase c;
  c.resp.add("content-encoding", "br");
  EXPECT_EQ(c.run(), Verdict::kEncoded);
}

TEST(CompressionDecide, NoTransform) {
  DecideCase c;
  c.resp.add("Cache-Control", "public");
  EXPECT_EQ(c.run(), Verdict::kCompress);
  c.resp.add("Cache-Control", "max-age=60, No-Transform");
  EXPECT_EQ(c.run(), Verdict::kNoTransform);
}

TEST(CompressionDecide, ContentTypes) {
  DecideCase c;
  c.resp.set("Content-Type", "application/octet-stream");
  EXPECT_EQ(c.run(), Verdict::kType);
  c.resp.set("Content-Type", "TEXT/Plain ;charset=utf-8");
  EXPECT_EQ(c.run(), Verdict::kCompress);
  c.resp.set("Content-Type", "image/svg+xml");
  EXPECT_EQ(c.run(), Verdict::kCompress);
  c.resp.set("Content-Type", "text/htmlx");
  EXPECT_EQ(c.run(), Verdict::kType);
  c.resp.remove("Content-Type");
  EXPECT_EQ(c.run(), Verdict::kType);
  // A configured list replaces the default one; "type/*" matches the subtypes.
  c.cfg.types = {"application/x-custom", "text/*"};
  c.resp.set("Content-Type", "application/x-custom");
  EXPECT_EQ(c.run(), Verdict::kCompress);
  c.resp.set("Content-Type", "text/anything");
  EXPECT_EQ(c.run(), Verdict::kCompress);
  c.resp.set("Content-Type", "application/json");
  EXPECT_EQ(c.run(), Verdict::kType);
}

TEST(CompressionDecide, MinSize) {
  DecideCase c;
  c.cfg.min_size = 5001;
  EXPECT_EQ(c.run(), Verdict::kTooSmall);
  c.cfg.min_size = 5000;
  EXPECT_EQ(c.run(), Verdict::kCompress);
  c.cfg.min_size = 1 << 20;
  c.framing.body = http1::BodyKind::kChunked;  // unknown length: compressed
  EXPECT_EQ(c.run(), Verdict::kCompress);
}

// ---------------------------------------------------------------- head edits

std::string fields(const HttpHead& h) {
  std::string s;
  for (const auto& f : h.headers) s += std::string(f.name) + ": " + std::string(f.value) + "\n";
  return s;
}

TEST(CompressionHead, EditsForAnHttp11Client) {
  HttpHead h;
  h.status = 200;
  h.add("Content-Type", "text/html");
  h.add("Content-Length", "5000");
  h.add("Accept-Ranges", "bytes");
  h.add("ETag", "\"abc\"");
  h.add("Last-Modified", "x");
  editResponseHead(h, Algo::kGzip, true);
  EXPECT_EQ(fields(h),
            "Content-Type: text/html\n"
            "ETag: W/\"abc\"\n"
            "Last-Modified: x\n"
            "transfer-encoding: chunked\n"
            "content-encoding: gzip\n"
            "vary: Accept-Encoding\n");
}

TEST(CompressionHead, EditsForAnHttp10Client) {
  HttpHead h;
  h.status = 200;
  h.add("Transfer-Encoding", "chunked");
  h.add("ETag", "W/\"weak\"");
  h.add("Vary", "Cookie");
  editResponseHead(h, Algo::kDeflate, false);
  EXPECT_EQ(fields(h),
            "ETag: W/\"weak\"\n"
            "Vary: Cookie, Accept-Encoding\n"
            "content-encoding: deflate\n");
}

TEST(CompressionHead, Vary) {
  HttpHead a;
  a.add("Vary", "accept-encoding");
  addVary(a);
  EXPECT_EQ(fields(a), "Vary: accept-encoding\n");
  HttpHead b;
  b.add("Vary", "*");
  addVary(b);
  EXPECT_EQ(fields(b), "Vary: *\n");
  HttpHead c;
  c.add("Vary", "Origin");
  c.add("Vary", "User-Agent, Accept-Encoding");
  addVary(c);
  EXPECT_EQ(fields(c), "Vary: Origin\nVary: User-Agent, Accept-Encoding\n");
  HttpHead d;
  d.add("Vary", "Origin");
  d.add("Vary", "");
  addVary(d);
  EXPECT_EQ(fields(d), "Vary: Origin\nVary: Accept-Encoding\n");
}

// ---------------------------------------------------------------- encoder

// Removes HTTP/1.1 chunk framing, checking it: every chunk non-empty, the last one 0.
std::string dechunk(const std::string& in) {
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t crlf = in.find("\r\n", pos);
    EXPECT_NE(crlf, std::string::npos) << "chunk size line";
    if (crlf == std::string::npos) return out;
    size_t size = std::stoul(in.substr(pos, crlf - pos), nullptr, 16);
    EXPECT_EQ(in.substr(pos, 1) == "0", size == 0) << "no leading zeros";
    pos = crlf + 2;
    if (size == 0) {
      EXPECT_EQ(in.substr(pos), "\r\n") << "last chunk, no trailer";
      return out;
    }
    out += in.substr(pos, size);
    pos += size;
    EXPECT_EQ(in.substr(pos, 2), "\r\n");
    pos += 2;
  }
}

std::string inflateAll(const std::string& in, Algo a) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, a == Algo::kGzip ? 31 : 15), Z_OK);
  std::string out;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  char buf[65536];
  int r;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    r = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
  } while (r == Z_OK);
  EXPECT_EQ(r, Z_STREAM_END);
  EXPECT_EQ(zs.avail_in, 0u) << "bytes after the end of the stream";
  inflateEnd(&zs);
  return out;
}

std::string text(size_t n, uint32_t seed) {
  static const char* kWords[] = {"proxy ", "crescent ", "server ", "backend ", "gzip ",
                                 "\n",     "<p>",       "</p>",    "lorem ",   "ipsum "};
  std::mt19937 rng(seed);
  std::string s;
  s.reserve(n + 16);
  while (s.size() < n) {
    s += kWords[rng() % 10];
    if (rng() % 7 == 0) s += std::to_string(rng());
  }
  s.resize(n);
  return s;
}

// Feeds `in` split at random points (sizes 1..max_piece), collects and checks the output.
std::string encode(const std::string& in, Algo a, Encoder::Framing framing, size_t max_piece,
                   uint32_t seed, BufferPool& pool) {
  Encoder enc(pool, framing);
  EXPECT_TRUE(enc.init(a, 6));
  std::mt19937 rng(seed);
  std::string wire;
  std::vector<Buffer> out;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t n = std::min(in.size() - pos, 1 + rng() % max_piece);
    EXPECT_TRUE(enc.feed(std::string_view(in).substr(pos, n), out));
    pos += n;
    for (Buffer& b : out) {
      EXPECT_FALSE(b.empty());
      EXPECT_LE(b.size(), pool.chunkSize());
      wire.append(b.view());
    }
    out.clear();
    EXPECT_LE(pool.inUse(), 1u) << "at most the buffer being filled is held";
  }
  EXPECT_TRUE(enc.finish(out));
  for (Buffer& b : out) wire.append(b.view());
  out.clear();
  EXPECT_EQ(enc.bytesIn(), in.size());
  return wire;
}

TEST(CompressionEncoder, RoundTripsAtRandomSplits) {
  BufferPool pool(4096);
  const std::string in = text(200000, 1);
  for (Algo a : {Algo::kGzip, Algo::kDeflate}) {
    std::string whole = encode(in, a, Encoder::Framing::kRaw, in.size(), 1, pool);
    for (size_t max_piece : {size_t{1}, size_t{7}, size_t{1000}, size_t{70000}}) {
      for (uint32_t seed : {1u, 2u}) {
        SCOPED_TRACE(std::string(algoName(a)) + " max_piece " + std::to_string(max_piece));
        std::string raw = encode(in, a, Encoder::Framing::kRaw, max_piece, seed, pool);
        EXPECT_LT(raw.size(), in.size() / 2);
        EXPECT_EQ(inflateAll(raw, a), in);
        // Without flushes the coded bytes do not depend on how the input was split.
        EXPECT_TRUE(raw == whole);
        std::string chunked = encode(in, a, Encoder::Framing::kChunked, max_piece, seed, pool);
        EXPECT_EQ(inflateAll(dechunk(chunked), a), in);
      }
    }
  }
  EXPECT_EQ(pool.inUse(), 0u);
}

TEST(CompressionEncoder, FormatsOnTheWire) {
  BufferPool pool;
  std::string gz = encode("hello", Algo::kGzip, Encoder::Framing::kRaw, 10, 1, pool);
  ASSERT_GE(gz.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // RFC 1952 magic
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  std::string zl = encode("hello", Algo::kDeflate, Encoder::Framing::kRaw, 10, 1, pool);
  ASSERT_GE(zl.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(zl[0]) & 0x0f, 8);  // RFC 1950 CM = deflate
  EXPECT_EQ(((static_cast<unsigned char>(zl[0]) << 8) | static_cast<unsigned char>(zl[1])) % 31, 0);
}

TEST(CompressionEncoder, FiveMegabytes) {
  BufferPool pool;
  const std::string in = text(5 * 1024 * 1024, 7);
  std::string wire = encode(in, Algo::kGzip, Encoder::Framing::kChunked, 16384, 3, pool);
  EXPECT_EQ(inflateAll(dechunk(wire), Algo::kGzip), in);
  EXPECT_EQ(pool.inUse(), 0u);
}

TEST(CompressionEncoder, IncompressibleInputGrowsLittle) {
  BufferPool pool(1024);
  std::mt19937 rng(5);
  std::string in(300000, '\0');
  for (char& c : in) c = static_cast<char>(rng());
  std::string wire = encode(in, Algo::kDeflate, Encoder::Framing::kChunked, 5000, 4, pool);
  // Stored blocks and chunk framing (~1% with 1 KB buffers) are all it adds.
  EXPECT_LT(wire.size(), in.size() + in.size() / 50);
  EXPECT_EQ(inflateAll(dechunk(wire), Algo::kDeflate), in);
}

TEST(CompressionEncoder, EmptyBody) {
  BufferPool pool;
  for (Algo a : {Algo::kGzip, Algo::kDeflate}) {
    std::string raw = encode("", a, Encoder::Framing::kRaw, 1, 1, pool);
    EXPECT_FALSE(raw.empty());
    EXPECT_EQ(inflateAll(raw, a), "");
    std::string chunked = encode("", a, Encoder::Framing::kChunked, 1, 1, pool);
    EXPECT_EQ(chunked.substr(chunked.size() - 5), "0\r\n\r\n");
    EXPECT_EQ(inflateAll(dechunk(chunked), a), "");
  }
  // Empty feeds are fine too.
  Encoder enc(pool, Encoder::Framing::kChunked);
  ASSERT_TRUE(enc.init(Algo::kGzip, 1));
  std::vector<Buffer> out;
  EXPECT_TRUE(enc.feed("", out));
  EXPECT_TRUE(enc.finish(out));
  std::string wire;
  for (Buffer& b : out) wire.append(b.view());
  EXPECT_EQ(inflateAll(dechunk(wire), Algo::kGzip), "");
}

TEST(CompressionEncoder, MisuseIsRefused) {
  BufferPool pool;
  std::vector<Buffer> out;
  Encoder none(pool, Encoder::Framing::kRaw);
  EXPECT_FALSE(none.init(Algo::kNone, 6));
  EXPECT_FALSE(none.feed("x", out));
  EXPECT_FALSE(none.finish(out));
  Encoder enc(pool, Encoder::Framing::kRaw);
  ASSERT_TRUE(enc.init(Algo::kGzip, 42));  // level clamped
  EXPECT_FALSE(enc.init(Algo::kGzip, 6));  // twice
  EXPECT_TRUE(enc.finish(out));
  EXPECT_FALSE(enc.feed("x", out));
  EXPECT_FALSE(enc.finish(out));
  out.clear();
  EXPECT_EQ(pool.inUse(), 0u);
}

TEST(CompressionEncoder, DestroyedMidStreamReleasesItsBuffer) {
  BufferPool pool;
  {
    Encoder enc(pool, Encoder::Framing::kChunked);
    ASSERT_TRUE(enc.init(Algo::kGzip, 6));
    std::vector<Buffer> out;
    ASSERT_TRUE(enc.feed(text(100000, 9), out));
  }
  EXPECT_EQ(pool.inUse(), 0u);
}

}  // namespace
}  // namespace crescent::core::compression
