// core/session/connector: which TLVs a PROXY v2 header sent to a server carries
// (proxyV2Options), checked on the wire: encoded with encodeV2, read back with the Parser.

#include "core/session/connector.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "core/config/config.h"
#include "core/proto/proxy_protocol.h"

namespace crescent::core {
namespace {

constexpr unsigned kTlsTlvs = kProxyV2Ssl | kProxyV2Authority | kProxyV2Alpn;

const tls::Info kTls{"TLSv1.3", "TLS_AES_256_GCM_SHA384", "site.test", "http/1.1", false, {}};

// The header a server receives for these options, parsed.
proxy::Header sent(unsigned options, const proxy::Header* received, const tls::Info* tls) {
  Address src = *Address::parse("127.0.0.1:40000");
  Address dst = *Address::parse("127.0.0.1:8443");
  auto bytes =
      proxy::encodeV2(proxy::Command::kProxy, &src, &dst, proxyV2Options(options, received, tls));
  EXPECT_TRUE(bytes.ok()) << bytes.message();
  proxy::Parser p;
  p.feed(bytes->data(), bytes->size());
  EXPECT_EQ(p.state(), proxy::Parser::State::kDone) << p.error();
  return p.header();
}

// A received header carrying the given TLVs (encoded, then parsed like a real one).
proxy::Header received(const proxy::V2Options& o) {
  Address src = *Address::parse("192.0.2.1:1234");
  Address dst = *Address::parse("192.0.2.2:443");
  auto bytes = proxy::encodeV2(proxy::Command::kProxy, &src, &dst, o);
  EXPECT_TRUE(bytes.ok()) << bytes.message();
  proxy::Parser p;
  p.feed(bytes->data(), bytes->size());
  EXPECT_EQ(p.state(), proxy::Parser::State::kDone) << p.error();
  return p.header();
}

TEST(ProxyV2Options, LocallyTerminatedTlsGivesSslAuthorityAndAlpn) {
  proxy::Header h = sent(kTlsTlvs, nullptr, &kTls);
  ASSERT_TRUE(h.authority().has_value());
  EXPECT_EQ(*h.authority(), "site.test");
  ASSERT_TRUE(h.alpn().has_value());
  EXPECT_EQ(*h.alpn(), "http/1.1");
  std::optional<proxy::SslInfo> ssl = h.ssl();
  ASSERT_TRUE(ssl.has_value());
  EXPECT_EQ(ssl->client, proxy::kClientSsl);
  EXPECT_EQ(ssl->verify, 0u);
  EXPECT_EQ(ssl->version, "TLSv1.3");
  EXPECT_EQ(ssl->cipher, "TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(ssl->cn, "");
}

// mTLS: a client certificate on the bind sets CERT_SESS (and CERT_CONN unless resumed),
// verify = 0 only when verified, and the CN sub-TLV.
TEST(ProxyV2Options, ClientCertificateBitsVerifyAndCn) {
  tls::Info t = kTls;
  tls::ClientCert c;
  c.verified = true;
  c.cn = "alice";
  t.client = c;
  std::optional<proxy::SslInfo> ssl = sent(kProxyV2Ssl, nullptr, &t).ssl();
  ASSERT_TRUE(ssl.has_value());
  EXPECT_EQ(ssl->client, proxy::kClientSsl | proxy::kClientCertConn | proxy::kClientCertSess);
  EXPECT_EQ(ssl->verify, 0u);
  EXPECT_EQ(ssl->cn, "alice");
  EXPECT_TRUE(ssl->verified());

  t.client->verified = false;
  t.client->verify_code = 10;  // X509_V_ERR_CERT_HAS_EXPIRED
  t.resumed = true;            // the certificate came with the session, not this connection
  ssl = sent(kProxyV2Ssl, nullptr, &t).ssl();
  ASSERT_TRUE(ssl.has_value());
  EXPECT_EQ(ssl->client, proxy::kClientSsl | proxy::kClientCertSess);
  EXPECT_EQ(ssl->verify, 10u);
  EXPECT_FALSE(ssl->verified());

  // A received SSL TLV is passed on as it came: bits, verify and CN included.
  proxy::V2Options o;
  o.ssl = true;
  o.ssl_client = proxy::kClientSsl | proxy::kClientCertConn;
  o.ssl_verify = 0;
  o.ssl_cn = "bob";
  o.ssl_version = "TLSv1.2";
  proxy::Header in = received(o);
  ssl = sent(kProxyV2Ssl, &in, &t).ssl();
  ASSERT_TRUE(ssl.has_value());
  EXPECT_EQ(ssl->client, proxy::kClientSsl | proxy::kClientCertConn);
  EXPECT_EQ(ssl->cn, "bob");
  EXPECT_EQ(ssl->version, "TLSv1.2");
  EXPECT_TRUE(ssl->verified());
}

TEST(ProxyV2Options, OnlyTheTlvsAskedFor) {
  proxy::Header h = sent(kProxyV2Alpn, nullptr, &kTls);
  EXPECT_TRUE(h.alpn().has_value());
  EXPECT_FALSE(h.authority().has_value());
  EXPECT_FALSE(h.ssl().has_value());
  h = sent(0, nullptr, &kTls);
  EXPECT_TRUE(h.tlvs.empty());
}

TEST(ProxyV2Options, NoSniNoAlpnNoTlsLeaveTheirTlvsOut) {
  tls::Info bare{"TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", "", "", false, std::nullopt};
  proxy::Header h = sent(kTlsTlvs, nullptr, &bare);
  EXPECT_FALSE(h.authority().has_value());
  EXPECT_FALSE(h.alpn().has_value());
  ASSERT_TRUE(h.ssl().has_value());
  EXPECT_EQ(h.ssl()->version, "TLSv1.2");
  h = sent(kTlsTlvs, nullptr, nullptr);  // plain connection, no header received
  EXPECT_TRUE(h.tlvs.empty());
}

TEST(ProxyV2Options, AReceivedHeaderWinsOverLocalTls) {
  proxy::V2Options o;
  o.authority = "first-hop.test";
  o.alpn = "h2";
  o.ssl = true;
  o.ssl_version = "TLSv1.2";
  o.ssl_cipher = "ECDHE-RSA-AES128-GCM-SHA256";
  proxy::Header in = received(o);
  proxy::Header h = sent(kTlsTlvs, &in, &kTls);
  EXPECT_EQ(*h.authority(), "first-hop.test");
  EXPECT_EQ(*h.alpn(), "h2");
  ASSERT_TRUE(h.ssl().has_value());
  EXPECT_EQ(h.ssl()->version, "TLSv1.2");
  EXPECT_EQ(h.ssl()->cipher, "ECDHE-RSA-AES128-GCM-SHA256");
}

TEST(ProxyV2Options, LocalTlsFillsWhatTheReceivedHeaderLacks) {
  proxy::V2Options o;
  o.alpn = "h2";  // no authority, no SSL TLV
  proxy::Header in = received(o);
  proxy::Header h = sent(kTlsTlvs, &in, &kTls);
  EXPECT_EQ(*h.alpn(), "h2");
  EXPECT_EQ(*h.authority(), "site.test");
  ASSERT_TRUE(h.ssl().has_value());
  EXPECT_EQ(h.ssl()->version, "TLSv1.3");
}

TEST(ProxyV2Options, AReceivedSslTlvWithoutTheSslBitYieldsToLocalTls) {
  // The hop before passed the client's TLS through (its SSL TLV says "not SSL"): the TLS
  // crescent terminated is the client's.
  proxy::Header in = received(proxy::V2Options());
  in.tlvs.push_back({proxy::kTlvSsl, std::string("\x00\x00\x00\x00\x00", 5)});
  ASSERT_TRUE(in.ssl().has_value());
  proxy::Header h = sent(kProxyV2Ssl, &in, &kTls);
  ASSERT_TRUE(h.ssl().has_value());
  EXPECT_EQ(h.ssl()->client, proxy::kClientSsl);
  EXPECT_EQ(h.ssl()->version, "TLSv1.3");
  // Without local TLS, nothing is claimed.
  h = sent(kProxyV2Ssl, &in, nullptr);
  EXPECT_FALSE(h.ssl().has_value());
}

}  // namespace
}  // namespace crescent::core
