// PROXY protocol v1/v2 codec: every valid shape under every split of the input with
// payload behind it, every refusal with its reason, CRC32C, and encode -> parse round
// trips. The v2 inputs here are written byte by byte from proxy-protocol.txt's layout,
// never produced by our encoder, except in the round-trip tests.

#include "core/proto/proxy_protocol.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

namespace crescent::core::proxy {
namespace {

using State = Parser::State;

const std::string kPayload = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

// ---- helpers -------------------------------------------------------------------------

struct Outcome {
  State state = State::kNeedMore;
  size_t consumed = 0;
  std::string error;
  Header header;
};

std::string hexBytes(std::string_view s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// Everything a caller can observe, as one comparable string.
std::string describe(const Outcome& o) {
  std::ostringstream s;
  s << "state=" << static_cast<int>(o.state) << " consumed=" << o.consumed << " error=\"" << o.error
    << "\"";
  if (o.state == State::kDone) {
    const Header& h = o.header;
    s << " v" << h.version << (h.command == Command::kProxy ? " PROXY" : " LOCAL")
      << " addrs=" << h.has_addresses << " src=" << h.src.toString() << "/"
      << hexBytes(std::string_view(reinterpret_cast<const char*>(h.src.sockaddrPtr()),
                                   h.src.sockaddrLen()))
      << " dst=" << h.dst.toString() << "/"
      << hexBytes(std::string_view(reinterpret_cast<const char*>(h.dst.sockaddrPtr()),
                                   h.dst.sockaddrLen()))
      << " tlvs=";
    for (const Tlv& t : h.tlvs) s << "[" << int(t.type) << ":" << hexBytes(t.value) << "]";
  }
  return s.str();
}

// Feeds `in` in pieces ending at each of `cuts` (ascending), then the rest.
Outcome feedPieces(std::string_view in, const std::vector<size_t>& cuts,
                   size_t limit = kV2DefaultLimit) {
  Parser p(limit);
  Outcome o;
  size_t pos = 0;
  auto piece = [&](size_t end) {
    size_t n = p.feed(in.data() + pos, end - pos);
    EXPECT_LE(n, end - pos);
    if (p.state() != State::kNeedMore) {
      // Nothing more is ever consumed once concluded.
      EXPECT_EQ(p.feed(in.data() + pos + n, in.size() - pos - n), 0u);
    } else {
      EXPECT_EQ(n, end - pos) << "a header in progress takes every byte offered";
    }
    o.consumed += n;
    pos = end;
  };
  for (size_t c : cuts) piece(c);
  piece(in.size());
  EXPECT_EQ(o.consumed, p.consumed());
  o.state = p.state();
  o.error = p.error();
  o.header = p.header();
  return o;
}

Outcome oneShot(std::string_view in, size_t limit = kV2DefaultLimit) {
  return feedPieces(in, {}, limit);
}

// One shot, at every split point in two, and one byte at a time: all must agree.
Outcome expectSplitInvariant(std::string_view in, size_t limit = kV2DefaultLimit) {
  Outcome whole = oneShot(in, limit);
  const std::string want = describe(whole);
  for (size_t i = 0; i <= in.size(); ++i) {
    std::string got = describe(feedPieces(in, {i}, limit));
    if (got != want) {
      ADD_FAILURE() << "split at " << i << ":\n  got  " << got << "\n  want " << want;
      break;
    }
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < in.size(); ++i) every.push_back(i);
  EXPECT_EQ(describe(feedPieces(in, every, limit)), want) << "one byte at a time";
  return whole;
}

// An accepted header followed by payload: the payload is never consumed.
Header expectHeader(const std::string& header_bytes, size_t limit = kV2DefaultLimit) {
  Outcome o = expectSplitInvariant(header_bytes + kPayload, limit);
  EXPECT_EQ(o.state, State::kDone) << o.error;
  EXPECT_EQ(o.consumed, header_bytes.size());
  EXPECT_TRUE(o.error.empty());
  return o.header;
}

void expectRefused(const std::string& in, const std::string& reason,
                   size_t limit = kV2DefaultLimit) {
  Outcome o = expectSplitInvariant(in, limit);
  EXPECT_EQ(o.state, State::kError);
  EXPECT_NE(o.error.find(reason), std::string::npos)
      << "error \"" << o.error << "\" lacks \"" << reason << "\"";
}

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s.push_back(static_cast<char>(b));
  return s;
}

const std::string kSig =
    bytes({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A});

std::string be16(size_t v) {
  return bytes({int(v >> 8), int(v & 0xff)});
}

// A v2 header from its parts, written by hand from §2.2 (not with encodeV2).
std::string v2(int ver_cmd, int fam, const std::string& body) {
  return kSig + bytes({ver_cmd, fam}) + be16(body.size()) + body;
}
std::string tlv(int type, const std::string& value) {
  return bytes({type}) + be16(value.size()) + value;
}

// 192.0.2.1:51234 -> 198.51.100.7:443, as an INET address block.
const std::string kInetBlock =
    bytes({0xC0, 0x00, 0x02, 0x01, 0xC6, 0x33, 0x64, 0x07, 0xC8, 0x22, 0x01, 0xBB});

Address addr(const char* text) {
  auto a = Address::parse(text);
  EXPECT_TRUE(a.ok()) << a.message();
  return a.ok() ? *a : Address();
}

// ---- detection -----------------------------------------------------------------------

TEST(ProxyDetect, FirstByteThatCanBeNeitherIsRefusedAtOnce) {
  Parser p;
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r\n", 16), 1u);
  EXPECT_EQ(p.state(), State::kError);
  EXPECT_EQ(p.error(), "not a PROXY protocol header");
  expectRefused("\x16\x03\x01", "not a PROXY protocol header");  // a TLS ClientHello
}

TEST(ProxyDetect, PrefixesThatMayStillBecomeAHeaderWait) {
  for (std::string in :
       {std::string("P"), std::string("PROX"), std::string("PROXY"), std::string("PROXY TCP4 1.2"),
        kSig.substr(0, 1), kSig.substr(0, 5), kSig, kSig + bytes({0x21, 0x11, 0x00})}) {
    Outcome o = expectSplitInvariant(in);
    EXPECT_EQ(o.state, State::kNeedMore) << hexBytes(in) << ": " << o.error;
    EXPECT_EQ(o.consumed, in.size());
  }
}

TEST(ProxyDetect, DivergingPrefixIsRefusedAtTheDivergingByte) {
  Parser p;
  EXPECT_EQ(p.feed("PRI * HTTP/2.0\r\n", 16), 3u);
  EXPECT_EQ(p.state(), State::kError);
  expectRefused("PROXI", "not a PROXY protocol header");
  std::string bad_sig = kSig;
  bad_sig[7] = 'q';
  expectRefused(bad_sig + bytes({0x21, 0x11, 0, 0}), "bad PROXY v2 signature");
  Parser q;
  EXPECT_EQ(q.feed(bad_sig.data(), bad_sig.size()), 8u);
}

TEST(ProxyDetect, ResetStartsOver) {
  Parser p;
  EXPECT_EQ(p.feed("x", 1), 1u);
  ASSERT_EQ(p.state(), State::kError);
  p.reset();
  EXPECT_EQ(p.state(), State::kNeedMore);
  EXPECT_TRUE(p.error().empty());
  const std::string line = "PROXY UNKNOWN\r\n";
  EXPECT_EQ(p.feed(line.data(), line.size()), line.size());
  EXPECT_EQ(p.state(), State::kDone);
  EXPECT_EQ(p.feed(nullptr, 0), 0u);
}

// ---- v1 ------------------------------------------------------------------------------

TEST(ProxyV1, Tcp4UnderEverySplitLeavesThePayload) {
  Header h = expectHeader("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.command, Command::kProxy);
  EXPECT_TRUE(h.has_addresses);
  EXPECT_EQ(h.src, addr("192.168.0.1:56324"));
  EXPECT_EQ(h.dst, addr("192.168.0.11:443"));
  EXPECT_TRUE(h.tlvs.empty());
}

TEST(ProxyV1, Tcp4Extremes) {
  Header h = expectHeader("PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n");
  EXPECT_EQ(h.src, addr("255.255.255.255:65535"));
  EXPECT_EQ(h.dst, addr("0.0.0.0:0"));
}

TEST(ProxyV1, Tcp6CompressedAndLongestForm) {
  Header h = expectHeader("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
  EXPECT_EQ(h.src, addr("[2001:db8::1]:1"));
  EXPECT_EQ(h.dst, addr("[::1]:65535"));
  const std::string full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string longest = "PROXY TCP6 " + full + " " + full + " 65535 65535\r\n";
  ASSERT_EQ(longest.size(), 104u);  // §2.1's TCP/IPv6 maximum
  h = expectHeader(longest);
  EXPECT_EQ(h.src, addr(("[" + full + "]:65535").c_str()));
}

TEST(ProxyV1, UnknownMeansUseTheRealAddresses) {
  Header h = expectHeader("PROXY UNKNOWN\r\n");
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.command, Command::kLocal);
  EXPECT_FALSE(h.has_addresses);
  EXPECT_EQ(h.src.family(), Address::Family::kNone);
  // Anything up to the CRLF is ignored, even what would be invalid after TCP4.
  h = expectHeader("PROXY UNKNOWN  garbage 999.1.1.1 x\x01y 99999\r\n");
  EXPECT_EQ(h.command, Command::kLocal);
  EXPECT_FALSE(h.has_addresses);
}

TEST(ProxyV1, WorstCaseLineOf107BytesIsAccepted) {
  const std::string full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string line = "PROXY UNKNOWN " + full + " " + full + " 65535 65535\r\n";
  ASSERT_EQ(line.size(), 107u);
  expectHeader(line);
}

TEST(ProxyV1, NoCrlfWithin107BytesIsRefusedAtThe107thByte) {
  const std::string line = "PROXY UNKNOWN " + std::string(200, 'x');
  Parser p;
  EXPECT_EQ(p.feed(line.data(), 106), 106u);
  EXPECT_EQ(p.state(), State::kNeedMore);
  EXPECT_EQ(p.feed(line.data() + 106, line.size() - 106), 1u);
  EXPECT_EQ(p.state(), State::kError);
  EXPECT_NE(p.error().find("PROXY v1: line longer than 107 bytes"), std::string::npos);
  expectRefused(line.substr(0, 108), "line longer than 107 bytes");
  // 106 bytes then CRLF: 108 bytes in all, one too many.
  expectRefused(line.substr(0, 106) + "\r\n", "line longer than 107 bytes");
}

TEST(ProxyV1, MalformedLinesAreRefusedWithTheirReason) {
  struct Case {
    const char* in;
    const char* reason;
  };
  const Case cases[] = {
      {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: empty field"},
      {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: empty field"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", "PROXY v1: empty field"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "PROXY v1: empty field"},
      {"PROXY \r\n", "PROXY v1: empty field"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY v1: LF without CR"},
      {"PROXY UNKNOWN\n", "PROXY v1: LF without CR"},
      {"PROXY TCP4 1.2.3.4\r 5.6.7.8 1 2\r\n", "PROXY v1: CR not followed by LF"},
      {"PROXY\r\n", "PROXY v1: expected a space after \"PROXY\""},
      {"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: expected a space"},
      {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: unknown protocol \"TCP5\""},
      {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"},
      {"PROXY UNKNOWNX\r\n", "unknown protocol"},
      {"PROXY TCP4\r\n", "got 0 field(s)"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "got 3 field(s)"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "got 5 field(s)"},
      {"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "invalid IPv4 source address \"256.2.3.4\""},
      {"PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n", "invalid IPv4 destination address"},
      {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "invalid IPv4 source address"},
      {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "invalid IPv4 source address"},
      {"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "invalid IPv4 source address"},
      {"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "invalid IPv4 source address"},
      {"PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n", "invalid IPv4 source address"},
      {"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "invalid IPv4 source address"},
      {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "invalid IPv6 source address"},
      {"PROXY TCP6 ::1 fe80::1%eth0 1 2\r\n", "invalid IPv6 destination address"},
      {"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "invalid IPv6 source address"},
      {"PROXY TCP6 2001:db8:::1 ::1 1 2\r\n", "invalid IPv6 source address"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "invalid source port \"65536\""},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "invalid destination port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", "invalid source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "invalid source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "invalid source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", "invalid destination port"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    expectRefused(c.in, c.reason);
  }
}

// ---- v2 ------------------------------------------------------------------------------

// Written by hand from §2.2's layout: TCP over IPv4, 192.0.2.1:51234 -> 198.51.100.7:443,
// ALPN "h2", AUTHORITY "example.com", SSL (client PP2_CLIENT_SSL, verify 0, version
// "TLSv1.3") and CRC32C 0x0B3B9177 (computed by a separate bitwise implementation).
const std::string kHandWrittenV2 = bytes({
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,  // signature
    0x21,                                                                    // v2, PROXY
    0x11,                                                                    // INET, STREAM
    0x00, 0x38,                                                              // 56 bytes follow
    0xC0, 0x00, 0x02, 0x01,                                                  // 192.0.2.1
    0xC6, 0x33, 0x64, 0x07,                                                  // 198.51.100.7
    0xC8, 0x22,                                                              // 51234
    0x01, 0xBB,                                                              // 443
    0x01, 0x00, 0x02, 'h',  '2',                                             // ALPN
    0x02, 0x00, 0x0B, 'e',  'x',  'a',  'm',  'p',  'l',  'e',  '.',  'c',  'o', 'm',  // AUTHORITY
    0x20, 0x00, 0x0F, 0x01, 0x00, 0x00, 0x00, 0x00,                                    // SSL
    0x21, 0x00, 0x07, 'T',  'L',  'S',  'v',  '1',  '.',  '3',                         //   VERSION
    0x03, 0x00, 0x04, 0x0B, 0x3B, 0x91, 0x77,                                          // CRC32C
});

TEST(ProxyV2, HandWrittenInetHeaderWithTlvsAndCrc) {
  ASSERT_EQ(kHandWrittenV2.size(), 16u + 56u);
  Header h = expectHeader(kHandWrittenV2);
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.command, Command::kProxy);
  EXPECT_TRUE(h.has_addresses);
  EXPECT_EQ(h.src, addr("192.0.2.1:51234"));
  EXPECT_EQ(h.dst, addr("198.51.100.7:443"));
  ASSERT_EQ(h.tlvs.size(), 4u);
  EXPECT_EQ(h.tlvs[0].type, kTlvAlpn);
  EXPECT_EQ(h.tlvs[1].type, kTlvAuthority);
  EXPECT_EQ(h.tlvs[2].type, kTlvSsl);
  EXPECT_EQ(h.tlvs[3].type, kTlvCrc32c);
  EXPECT_EQ(h.alpn(), "h2");
  EXPECT_EQ(h.authority(), "example.com");
  EXPECT_FALSE(h.uniqueId().has_value());
  auto ssl = h.ssl();
  ASSERT_TRUE(ssl.has_value());
  EXPECT_EQ(ssl->client, kClientSsl);
  EXPECT_EQ(ssl->verify, 0u);
  EXPECT_EQ(ssl->version, "TLSv1.3");
  EXPECT_TRUE(ssl->cipher.empty());
  EXPECT_EQ(h.find(kTlvCrc32c)->value, bytes({0x0B, 0x3B, 0x91, 0x77}));
  EXPECT_EQ(h.find(kTlvNetns), nullptr);
}

TEST(ProxyV2, Inet6) {
  std::string block = bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}) +
                      bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}) +
                      bytes({0xff, 0xff, 0x00, 0x50});
  Header h = expectHeader(v2(0x21, 0x21, block));
  EXPECT_TRUE(h.has_addresses);
  EXPECT_EQ(h.src, addr("[2001:db8::1]:65535"));
  EXPECT_EQ(h.dst, addr("[::1]:80"));
  EXPECT_TRUE(h.tlvs.empty());
}

TEST(ProxyV2, UnixPathAndAbstractName) {
  std::string src(108, '\0'), dst(108, '\0');
  src.replace(0, 11, "/run/a.sock");
  dst.replace(1, 4, "name");  // leading NUL: abstract namespace
  Header h = expectHeader(v2(0x21, 0x31, src + dst));
  EXPECT_TRUE(h.has_addresses);
  EXPECT_TRUE(h.src.isUnix());
  EXPECT_EQ(h.src.unixPath(), "/run/a.sock");
  EXPECT_EQ(h.dst.unixPath(), "@name");
  EXPECT_EQ(h.src, addr("unix:/run/a.sock"));
  EXPECT_EQ(h.dst, addr("unix:@name"));
  // An unnamed peer (all zeros), as a client of a UNIX bind usually is.
  h = expectHeader(v2(0x21, 0x31, std::string(216, '\0')));
  EXPECT_TRUE(h.src.isUnix());
  EXPECT_EQ(h.src.unixPath(), "");
  EXPECT_EQ(h.src.ip(), "unix");
}

TEST(ProxyV2, UnspecProxyHasNoAddressesButKeepsTlvs) {
  Header h = expectHeader(v2(0x21, 0x00, tlv(kTlvAlpn, "h2")));
  EXPECT_EQ(h.command, Command::kProxy);
  EXPECT_FALSE(h.has_addresses);
  EXPECT_EQ(h.src.family(), Address::Family::kNone);
  EXPECT_EQ(h.alpn(), "h2");
}

TEST(ProxyV2, LocalSkipsLengthBytesUnread) {
  Header h = expectHeader(v2(0x20, 0x00, ""));
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.command, Command::kLocal);
  EXPECT_FALSE(h.has_addresses);
  // A LOCAL header carrying addresses and bytes that are no TLVs: all skipped.
  h = expectHeader(v2(0x20, 0x11, kInetBlock + "xy"));
  EXPECT_EQ(h.command, Command::kLocal);
  EXPECT_FALSE(h.has_addresses);
  EXPECT_TRUE(h.tlvs.empty());
  // Its family is ignored, so DGRAM is not refused; a length shorter than the block is
  // not either.
  expectHeader(v2(0x20, 0x12, ""));
}

TEST(ProxyV2, TlvsAreKeptInWireOrderWithNoopAndUnknownTypes) {
  std::string body = kInetBlock + tlv(kTlvNoop, "") + tlv(0xE0, "custom") +
                     tlv(kTlvUniqueId, std::string(128, 'u')) + tlv(kTlvNetns, "blue") +
                     tlv(kTlvAlpn, "http/1.1") + tlv(kTlvAlpn, "second");
  Header h = expectHeader(v2(0x21, 0x11, body));
  ASSERT_EQ(h.tlvs.size(), 6u);
  EXPECT_EQ(h.tlvs[0].type, kTlvNoop);
  EXPECT_EQ(h.tlvs[1].type, 0xE0);
  EXPECT_EQ(h.tlvs[1].value, "custom");
  EXPECT_EQ(h.uniqueId(), std::string(128, 'u'));
  EXPECT_EQ(h.find(kTlvNetns)->value, "blue");
  EXPECT_EQ(h.alpn(), "http/1.1");  // the first one
}

TEST(ProxyV2, SslSubTlvsAreDecodedNotFlattened) {
  std::string ssl = bytes({kClientSsl | kClientCertConn, 0, 0, 0, 7}) +
                    tlv(kSslSubVersion, "TLSv1.2") + tlv(kSslSubCn, "client.example") +
                    tlv(kSslSubCipher, "ECDHE-RSA-AES128-GCM-SHA256") +
                    tlv(kSslSubSigAlg, "RSA-SHA256") + tlv(kSslSubKeyAlg, "RSA2048") +
                    tlv(0x2f, "unknown sub-TLV");
  Header h = expectHeader(v2(0x21, 0x11, kInetBlock + tlv(kTlvSsl, ssl)));
  ASSERT_EQ(h.tlvs.size(), 1u);
  auto info = h.ssl();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->client, kClientSsl | kClientCertConn);
  EXPECT_EQ(info->verify, 7u);
  EXPECT_EQ(info->version, "TLSv1.2");
  EXPECT_EQ(info->cn, "client.example");
  EXPECT_EQ(info->cipher, "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_EQ(info->sig_alg, "RSA-SHA256");
  EXPECT_EQ(info->key_alg, "RSA2048");
}

TEST(ProxyV2, MalformedHeadersAreRefusedWithTheirReason) {
  std::string crc_flipped = kHandWrittenV2;
  crc_flipped[crc_flipped.size() - 1] ^= 1;
  std::string data_flipped = kHandWrittenV2;
  data_flipped[40] ^= 0x20;  // a letter of "example.com"
  std::string ssl_short = bytes({1, 0, 0, 0});
  std::string ssl_overrun = bytes({1, 0, 0, 0, 0}) + bytes({kSslSubVersion, 0, 9}) + "TLSv1.3";
  struct Case {
    const char* name;
    std::string in;
    const char* reason;
  };
  const Case cases[] = {
      {"version 1", v2(0x11, 0x11, kInetBlock), "PROXY v2: unsupported version 1"},
      {"version 3", v2(0x31, 0x11, kInetBlock), "unsupported version 3"},
      {"command 2", v2(0x22, 0x11, kInetBlock), "PROXY v2: invalid command 2"},
      {"command 15", v2(0x2f, 0x11, kInetBlock), "invalid command 15"},
      {"DGRAM over IPv4", v2(0x21, 0x12, kInetBlock), "PROXY v2: DGRAM transport not supported"},
      {"DGRAM over UNIX", v2(0x21, 0x32, std::string(216, 'a')), "DGRAM"},
      {"family 4", v2(0x21, 0x41, kInetBlock), "PROXY v2: invalid address family 4"},
      {"transport 3", v2(0x21, 0x13, kInetBlock), "PROXY v2: invalid transport protocol 3"},
      {"INET without transport", v2(0x21, 0x10, kInetBlock), "invalid family/transport byte 0x10"},
      {"LOCAL family 5", v2(0x20, 0x51, ""), "invalid address family 5"},
      {"INET length 8", v2(0x21, 0x11, kInetBlock.substr(0, 8)),
       "PROXY v2: length 8 is shorter than the 12-byte INET address block"},
      {"INET6 length 12", v2(0x21, 0x21, kInetBlock), "shorter than the 36-byte INET6"},
      {"UNIX length 108", v2(0x21, 0x31, std::string(108, 'a')), "216-byte UNIX"},
      {"TLV overrun", v2(0x21, 0x11, kInetBlock + bytes({kTlvAlpn, 0, 10}) + "h2"),
       "PROXY v2: TLV 0x01 at offset 0 of the TLV area (length 10) overruns it by 8"},
      {"trailing bytes", v2(0x21, 0x11, kInetBlock + tlv(kTlvAlpn, "h2") + "xy"),
       "2 trailing byte(s)"},
      {"CRC mismatch (value)", crc_flipped, "PROXY v2: CRC32C mismatch"},
      {"CRC mismatch (data)", data_flipped, "PROXY v2: CRC32C mismatch"},
      {"CRC length 3", v2(0x21, 0x11, kInetBlock + tlv(kTlvCrc32c, "abc")),
       "CRC32C TLV is 3 byte(s), expected 4"},
      {"CRC twice", v2(0x21, 0x11, kInetBlock + tlv(kTlvCrc32c, "abcd") + tlv(kTlvCrc32c, "abcd")),
       "duplicate CRC32C TLV"},
      {"UNIQUE_ID 129", v2(0x21, 0x11, kInetBlock + tlv(kTlvUniqueId, std::string(129, 'u'))),
       "UNIQUE_ID TLV is 129 bytes (max 128)"},
      {"SSL short", v2(0x21, 0x11, kInetBlock + tlv(kTlvSsl, ssl_short)),
       "SSL TLV is 4 byte(s), shorter than its 5 fixed bytes"},
      {"SSL sub-TLV overrun", v2(0x21, 0x11, kInetBlock + tlv(kTlvSsl, ssl_overrun)),
       "SSL sub-TLV area (length 9) overruns it by 2"},
      {"too large", v2(0x21, 0x11, kInetBlock + tlv(kTlvNoop, std::string(kV2DefaultLimit, 'n'))),
       "PROXY v2: header too large (4127 bytes, limit 4096)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    expectRefused(c.in, c.reason);
  }
}

TEST(ProxyV2, FixedPartFaultsAreRefusedBeforeTheRestArrives) {
  Parser p;
  std::string in = v2(0x21, 0x11, kInetBlock + tlv(kTlvNoop, std::string(5000, 'n')));
  EXPECT_EQ(p.feed(in.data(), in.size()), 16u);
  EXPECT_EQ(p.state(), State::kError);
  EXPECT_NE(p.error().find("too large"), std::string::npos);
  Parser q;
  in = v2(0x12, 0x11, kInetBlock);
  EXPECT_EQ(q.feed(in.data(), in.size()), 13u);
  EXPECT_EQ(q.state(), State::kError);
  Parser r;
  in = v2(0x21, 0x12, kInetBlock);
  EXPECT_EQ(r.feed(in.data(), in.size()), 14u);
  EXPECT_EQ(r.state(), State::kError);
}

TEST(ProxyV2, SizeLimitIsConfigurableAndInclusive) {
  const std::string at_limit =
      v2(0x21, 0x11, kInetBlock + tlv(kTlvNoop, std::string(4096 - 16 - 12 - 3, 'n')));
  ASSERT_EQ(at_limit.size(), 4096u);
  expectHeader(at_limit);
  const std::string unix_hdr = v2(0x21, 0x31, std::string(216, '\0'));
  expectRefused(unix_hdr, "header too large (232 bytes, limit 100)", 100);
  expectHeader(unix_hdr, 232);
  // The limit is clamped to what the wire format can express.
  expectRefused(v2(0x20, 0x00, "x"), "header too large (17 bytes, limit 16)", 0);
  const std::string biggest = v2(0x21, 0x00, tlv(kTlvNoop, std::string(65532, 'n')));
  ASSERT_EQ(biggest.size(), kV2MaxSize);
  Outcome o = oneShot(biggest + kPayload, SIZE_MAX);
  EXPECT_EQ(o.state, State::kDone) << o.error;
  EXPECT_EQ(o.consumed, kV2MaxSize);
}

// ---- CRC32C --------------------------------------------------------------------------

TEST(ProxyCrc32c, KnownCheckValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  EXPECT_EQ(crc32c(std::string(32, '\0').data(), 32), 0x8A9136AAu);    // RFC 3720 B.4
  EXPECT_EQ(crc32c(std::string(32, '\xff').data(), 32), 0x62A8AB43u);  // RFC 3720 B.4
}

TEST(ProxyCrc32c, SeedContinuesAComputation) {
  const std::string s = "The quick brown fox jumps over the lazy dog";
  for (size_t cut = 0; cut <= s.size(); ++cut)
    EXPECT_EQ(crc32c(s.data() + cut, s.size() - cut, crc32c(s.data(), cut)),
              crc32c(s.data(), s.size()));
}

// ---- encoders ------------------------------------------------------------------------

TEST(ProxyEncode, V1Lines) {
  EXPECT_EQ(encodeV1(addr("192.168.0.1:56324"), addr("192.168.0.11:443")),
            "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  EXPECT_EQ(encodeV1(addr("[2001:db8::1]:1"), addr("[::1]:0")),
            "PROXY TCP6 2001:db8::1 ::1 1 0\r\n");
  EXPECT_EQ(encodeV1(addr("1.2.3.4:1"), addr("[::1]:2")), "PROXY UNKNOWN\r\n");
  EXPECT_EQ(encodeV1(addr("unix:/run/a.sock"), addr("unix:/run/b.sock")), "PROXY UNKNOWN\r\n");
  EXPECT_EQ(encodeV1(Address(), Address()), "PROXY UNKNOWN\r\n");
}

TEST(ProxyEncode, V1RoundTrips) {
  for (auto [s, d] : {std::pair{"10.0.0.1:1", "10.0.0.2:65535"},
                      std::pair{"[fe80::1:2]:443", "[::ffff:1.2.3.4]:80"}}) {
    Address src = addr(s), dst = addr(d);
    Header h = expectHeader(encodeV1(src, dst));
    EXPECT_EQ(h.src, src);
    EXPECT_EQ(h.dst, dst);
  }
}

TEST(ProxyEncode, V2LocalIsTheBare16Bytes) {
  V2Options opts;
  opts.crc32c = true;
  opts.alpn = "h2";
  auto out = encodeV2(Command::kLocal, nullptr, nullptr, opts);
  ASSERT_TRUE(out.ok()) << out.message();
  EXPECT_EQ(*out, kSig + bytes({0x20, 0x00, 0x00, 0x00}));
  Header h = expectHeader(*out);
  EXPECT_EQ(h.command, Command::kLocal);
}

TEST(ProxyEncode, V2AllTlvsRoundTripInOrder) {
  V2Options opts;
  opts.crc32c = true;
  opts.alpn = "h2";
  opts.authority = "example.com";
  opts.unique_id = std::string(128, 'i');
  opts.ssl = true;
  opts.ssl_version = "TLSv1.3";
  opts.ssl_cipher = "TLS_AES_128_GCM_SHA256";
  Address src = addr("192.0.2.1:51234"), dst = addr("198.51.100.7:443");
  auto out = encodeV2(Command::kProxy, &src, &dst, opts);
  ASSERT_TRUE(out.ok()) << out.message();
  EXPECT_EQ(out->substr(0, 14), kSig + bytes({0x21, 0x11}));
  EXPECT_EQ(out->substr(16, 12), kInetBlock);
  Header h = expectHeader(*out);
  EXPECT_EQ(h.src, src);
  EXPECT_EQ(h.dst, dst);
  ASSERT_EQ(h.tlvs.size(), 5u);
  const uint8_t order[] = {kTlvAlpn, kTlvAuthority, kTlvUniqueId, kTlvSsl, kTlvCrc32c};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(h.tlvs[i].type, order[i]) << i;
  EXPECT_EQ(h.alpn(), "h2");
  EXPECT_EQ(h.authority(), "example.com");
  EXPECT_EQ(h.uniqueId(), opts.unique_id);
  auto ssl = h.ssl();
  ASSERT_TRUE(ssl.has_value());
  EXPECT_EQ(ssl->client, kClientSsl);
  EXPECT_EQ(ssl->verify, 0u);
  EXPECT_EQ(ssl->version, "TLSv1.3");
  EXPECT_EQ(ssl->cipher, "TLS_AES_128_GCM_SHA256");
  // The checksum covers every byte after the fixed part: any flip there is refused,
  // except in the CRC32C TLV's own type byte, which turns it into another TLV (0x02)
  // and so removes the check (a limit of the protocol, not of the codec).
  const size_t crc_type_at = out->size() - 7;
  for (size_t i = kV2FixedSize; i < out->size(); ++i) {
    if (i == crc_type_at) continue;
    std::string bad = *out;
    bad[i] ^= 0x01;
    Outcome o = oneShot(bad + kPayload);
    EXPECT_EQ(o.state, State::kError) << "flipped byte " << i;
  }
}

TEST(ProxyEncode, V2SameBytesAsTheHandWrittenHeader) {
  V2Options opts;
  opts.crc32c = true;
  opts.alpn = "h2";
  opts.authority = "example.com";
  opts.ssl = true;
  opts.ssl_version = "TLSv1.3";
  Address src = addr("192.0.2.1:51234"), dst = addr("198.51.100.7:443");
  auto out = encodeV2(Command::kProxy, &src, &dst, opts);
  ASSERT_TRUE(out.ok()) << out.message();
  EXPECT_EQ(hexBytes(*out), hexBytes(kHandWrittenV2));
}

// The SSL TLV of a client that presented a certificate (mTLS): the <client> bits, the
// <verify> word big-endian, and the sub-TLVs VERSION, CN, CIPHER in that order, written
// byte for byte as §2.2.6 lays them out.
TEST(ProxyEncode, V2SslTlvWithAClientCertificate) {
  V2Options opts;
  opts.ssl = true;
  opts.ssl_client = kClientSsl | kClientCertConn | kClientCertSess;
  opts.ssl_verify = 0x0000000a;  // X509_V_ERR_CERT_HAS_EXPIRED
  opts.ssl_version = "TLSv1.3";
  opts.ssl_cn = "client one";
  opts.ssl_cipher = "TLS_AES_256_GCM_SHA384";
  Address src = addr("192.0.2.1:51234"), dst = addr("198.51.100.7:443");
  auto out = encodeV2(Command::kProxy, &src, &dst, opts);
  ASSERT_TRUE(out.ok()) << out.message();
  std::string value = bytes({0x07, 0x00, 0x00, 0x00, 0x0a}) + tlv(kSslSubVersion, "TLSv1.3") +
                      tlv(kSslSubCn, "client one") + tlv(kSslSubCipher, "TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(hexBytes(*out), hexBytes(v2(0x21, 0x11, kInetBlock + tlv(kTlvSsl, value))));
  Header h = expectHeader(*out);
  auto ssl = h.ssl();
  ASSERT_TRUE(ssl.has_value());
  EXPECT_EQ(ssl->client, kClientSsl | kClientCertConn | kClientCertSess);
  EXPECT_EQ(ssl->verify, 10u);
  EXPECT_EQ(ssl->cn, "client one");
  EXPECT_EQ(ssl->version, "TLSv1.3");
  EXPECT_EQ(ssl->cipher, "TLS_AES_256_GCM_SHA384");
  EXPECT_FALSE(ssl->verified());  // a certificate, but verify is not 0
}

TEST(ProxyV2, SslVerifiedNeedsACertificateAndVerifyZero) {
  auto decode = [](uint8_t client, uint8_t verify) {
    Header h =
        expectHeader(v2(0x21, 0x11, kInetBlock + tlv(kTlvSsl, bytes({client, 0, 0, 0, verify}))));
    auto ssl = h.ssl();
    EXPECT_TRUE(ssl.has_value());
    return ssl.has_value() && ssl->verified();
  };
  EXPECT_TRUE(decode(kClientSsl | kClientCertConn, 0));
  EXPECT_TRUE(decode(kClientSsl | kClientCertSess, 0));  // resumed: the session's certificate
  EXPECT_FALSE(decode(kClientSsl, 0));                   // TLS, but no certificate
  EXPECT_FALSE(decode(kClientSsl | kClientCertConn, 1));
}

TEST(ProxyV2, SslTlvWithACnOverrunningItsContainerIsRefused) {
  std::string ssl =
      bytes({kClientSsl | kClientCertConn, 0, 0, 0, 0}) + bytes({kSslSubCn, 0, 20}) + "short cn";
  Outcome o = oneShot(v2(0x21, 0x11, kInetBlock + tlv(kTlvSsl, ssl)) + kPayload);
  EXPECT_EQ(o.state, State::kError);
  EXPECT_NE(o.error.find("SSL sub-TLV"), std::string::npos) << o.error;
}

TEST(ProxyEncode, V2AddressShapes) {
  V2Options none;
  Address v6a = addr("[2001:db8::1]:1"), v6b = addr("[::1]:2");
  auto out = encodeV2(Command::kProxy, &v6a, &v6b, none);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->size(), 16u + 36u);
  EXPECT_EQ((*out)[13], 0x21);
  Header h = expectHeader(*out);
  EXPECT_EQ(h.src, v6a);
  EXPECT_EQ(h.dst, v6b);

  // Mixed IP families: IPv6 with the IPv4 one mapped.
  Address v4 = addr("192.0.2.1:5");
  out = encodeV2(Command::kProxy, &v4, &v6b, none);
  ASSERT_TRUE(out.ok());
  h = expectHeader(*out);
  EXPECT_EQ(h.src, addr("[::ffff:192.0.2.1]:5"));
  EXPECT_EQ(h.dst, v6b);

  Address ua = addr("unix:/run/a.sock"), ub = addr("unix:@abstract");
  out = encodeV2(Command::kProxy, &ua, &ub, none);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->size(), 16u + 216u);
  EXPECT_EQ((*out)[13], 0x31);
  h = expectHeader(*out);
  EXPECT_EQ(h.src, ua);
  EXPECT_EQ(h.dst, ub);

  // Nothing to describe: UNSPEC, but still PROXY and still the TLVs.
  V2Options alpn;
  alpn.alpn = "h2";
  for (auto [s, d] : {std::pair<const Address*, const Address*>{nullptr, &v4},
                      std::pair<const Address*, const Address*>{&ua, &v4}}) {
    out = encodeV2(Command::kProxy, s, d, alpn);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ((*out)[13], 0x00);
    h = expectHeader(*out);
    EXPECT_EQ(h.command, Command::kProxy);
    EXPECT_FALSE(h.has_addresses);
    EXPECT_EQ(h.alpn(), "h2");
  }
}

TEST(ProxyEncode, V2RefusesWhatCannotBeSent) {
  Address a = addr("1.2.3.4:1");
  V2Options opts;
  opts.unique_id = std::string(129, 'u');
  auto out = encodeV2(Command::kProxy, &a, &a, opts);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.message().find("unique id is 129 bytes (max 128)"), std::string::npos);
  opts.unique_id.clear();
  opts.alpn = std::string(65536, 'a');
  out = encodeV2(Command::kProxy, &a, &a, opts);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.message().find("max 65551"), std::string::npos) << out.message();
}

}  // namespace
}  // namespace crescent::core::proxy
