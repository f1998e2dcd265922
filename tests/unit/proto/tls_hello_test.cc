// parseClientHello against ClientHellos that OpenSSL's client writes into a memory BIO
// (no network): SNI, ALPN and the version come out right, whatever the split of the bytes
// across reads; other protocols and damaged hellos are told apart at once.

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "core/proto/tls_hello.h"

namespace crescent::core::tls {
namespace {

// The first flight of an OpenSSL client: its ClientHello record(s).
std::string opensslHello(const char* sni, const std::vector<std::string>& alpn,
                         int max_version = TLS1_3_VERSION) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  if (sni != nullptr) SSL_set_tlsext_host_name(ssl, sni);
  if (!alpn.empty()) {
    std::string wire;
    for (const std::string& p : alpn) {
      wire.push_back(static_cast<char>(p.size()));
      wire += p;
    }
    SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned>(wire.size()));
  }
  SSL_set_connect_state(ssl);
  EXPECT_EQ(SSL_do_handshake(ssl), -1);  // wants to read the server's answer
  char* data = nullptr;
  long n = BIO_get_mem_data(wbio, &data);
  std::string out(data, static_cast<size_t>(n));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

TEST(TlsHello, SniAlpnAndVersionFromARealClientHello) {
  std::string hello = opensslHello("A.Test", {"h2", "http/1.1"});
  ASSERT_GT(hello.size(), 100u);
  ClientHello h = parseClientHello(hello);
  ASSERT_EQ(h.state, ClientHello::State::kHello) << h.error;
  EXPECT_EQ(h.sni, "a.test");  // lower-cased
  EXPECT_EQ(h.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(h.version, 0x0304);
}

TEST(TlsHello, Tls12ClientWithoutSniOrAlpn) {
  ClientHello h = parseClientHello(opensslHello(nullptr, {}, TLS1_2_VERSION));
  ASSERT_EQ(h.state, ClientHello::State::kHello) << h.error;
  EXPECT_EQ(h.sni, "");
  EXPECT_TRUE(h.alpn.empty());
  EXPECT_EQ(h.version, 0x0303);
}

// Every prefix is kNeedMore, the whole is the same kHello: the decision does not depend
// on how the bytes were split, and comes as soon as the last byte arrives.
TEST(TlsHello, EveryPrefixNeedsMoreAndTheWholeDecides) {
  std::string hello = opensslHello("b.test", {"http/1.1"});
  for (size_t i = 0; i < hello.size(); ++i) {
    ClientHello h = parseClientHello(std::string_view(hello).substr(0, i));
    ASSERT_EQ(h.state, ClientHello::State::kNeedMore) << "prefix of " << i << " bytes";
  }
  ClientHello h = parseClientHello(hello + "trailing application bytes");
  ASSERT_EQ(h.state, ClientHello::State::kHello);
  EXPECT_EQ(h.sni, "b.test");
}

// A ClientHello split over several handshake records (allowed by RFC 8446 §5.1) is
// reassembled.
TEST(TlsHello, HelloSpreadOverSeveralRecords) {
  std::string hello = opensslHello("c.test", {"h2"});
  ASSERT_EQ(static_cast<unsigned char>(hello[0]), 0x16);
  size_t len = (static_cast<unsigned char>(hello[3]) << 8) | static_cast<unsigned char>(hello[4]);
  ASSERT_EQ(hello.size(), 5 + len);  // one record as OpenSSL writes it
  std::string body = hello.substr(5);
  std::string split;
  for (size_t off = 0; off < body.size(); off += 50) {
    std::string piece = body.substr(off, 50);
    split += hello.substr(0, 3);
    split.push_back(static_cast<char>(piece.size() >> 8));
    split.push_back(static_cast<char>(piece.size() & 0xff));
    split += piece;
  }
  ClientHello h = parseClientHello(split);
  ASSERT_EQ(h.state, ClientHello::State::kHello) << h.error;
  EXPECT_EQ(h.sni, "c.test");
  EXPECT_EQ(h.alpn, std::vector<std::string>{"h2"});
}

TEST(TlsHello, OtherProtocolsAndDamagedHellos) {
  EXPECT_EQ(parseClientHello("GET / HTTP/1.1\r\n").state, ClientHello::State::kNotTls);
  EXPECT_EQ(parseClientHello("SSH-2.0-OpenSSH_9.2\r\n").state, ClientHello::State::kNotTls);
  EXPECT_EQ(parseClientHello("").state, ClientHello::State::kNeedMore);
  std::string hello = opensslHello("d.test", {});
  // A handshake record whose message is not a ClientHello (type 2: ServerHello).
  std::string wrong = hello;
  wrong[5] = 2;
  EXPECT_EQ(parseClientHello(wrong).state, ClientHello::State::kInvalid);
  // A ClientHello whose length runs past its record: the extensions' length is damaged.
  std::string damaged = hello;
  damaged[6] = static_cast<char>(0xff);  // message length high byte
  ClientHello d = parseClientHello(damaged);
  EXPECT_NE(d.state, ClientHello::State::kHello);
}

}  // namespace
}  // namespace crescent::core::tls
