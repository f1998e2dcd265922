// tls::Engine and the contexts, two engines talking through memory (no sockets): the
// handshake, SNI certificate choice, ALPN, min_version, verification (CA, name, IP), data
// both ways at every kind of split, close_notify, session resumption with rotated ticket
// keys, and certificate loading errors as config errors.
#include "core/tls/tls_engine.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <random>

#include "core/tls/tls_context.h"
#include "tls_test_util.h"

namespace crescent::core::tls {
namespace {

using testing::CertDir;
using Progress = StreamFilter::Progress;
using ReadResult = StreamFilter::ReadResult;

class TlsEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new CertDir();
    dir_->makeCa("ca");
    dir_->makeCa("other-ca");
    dir_->makeLeaf("site", "ca", "site.test", {"DNS:site.test", "DNS:www.site.test"});
    dir_->makeLeaf("other", "ca", "other.test", {"DNS:other.test", "DNS:*.wild.test"});
    dir_->makeLeaf("cn-only", "ca", "cn.test", {});
    dir_->makeLeaf("ip", "ca", "ip", {"IP:127.0.0.1"});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string path(const std::string& f) { return dir_->path(f); }

  // A bind serving `pems` (cert and key in one file each), the first by default.
  static std::unique_ptr<ServerContext> server(const std::vector<std::string>& pems,
                                               std::vector<std::string> alpn = {},
                                               std::string min_version = "") {
    TlsBindConfig cfg;
    for (const auto& p : pems) cfg.certs.push_back({path(p), ""});
    cfg.alpn = std::move(alpn);
    cfg.min_version = std::move(min_version);
    auto r = ServerContext::create(cfg);
    EXPECT_TRUE(r.ok()) << r.message();
    return r.ok() ? std::move(*r) : nullptr;
  }

  static std::unique_ptr<ClientContext> client(const std::string& ca, const std::string& sni,
                                               std::vector<std::string> alpn = {},
                                               const std::string& addr = "127.0.0.1:443") {
    TlsServerConfig cfg;
    cfg.enabled = true;
    cfg.ca = ca.empty() ? "" : path(ca);
    cfg.sni = sni;
    cfg.alpn = std::move(alpn);
    auto r = ClientContext::create(cfg, *Address::parse(addr));
    EXPECT_TRUE(r.ok()) << r.message();
    return r.ok() ? std::move(*r) : nullptr;
  }

  static CertDir* dir_;
};

CertDir* TlsEngineTest::dir_ = nullptr;

TEST_F(TlsEngineTest, HandshakeAgreesAndReportsInfo) {
  auto sc = server({"site.pem"});
  auto cc = client("ca.crt", "site.test");
  auto s = Engine::accept(*sc);
  auto c = Engine::connect(*cc);
  ASSERT_TRUE(testing::handshake(*c, *s)) << c->error() << " / " << s->error();
  EXPECT_EQ(s->info().version, "TLSv1.3");
  EXPECT_FALSE(s->info().cipher.empty());
  EXPECT_EQ(s->info().cipher, c->info().cipher);
  EXPECT_EQ(s->info().sni, "site.test");
  EXPECT_EQ(c->info().sni, "site.test");
  EXPECT_EQ(s->info().alpn, "");
  EXPECT_FALSE(s->info().resumed);
  EXPECT_TRUE(s->error().empty());
}

TEST_F(TlsEngineTest, CertificateNamesAndSniChoice) {
  auto sc = server({"site.pem", "other.pem", "cn-only.pem"});
  EXPECT_EQ(sc->certNames(0), (std::vector<std::string>{"site.test", "www.site.test"}));
  EXPECT_EQ(sc->certNames(2), (std::vector<std::string>{"cn.test"}));  // no SAN: the CN
  EXPECT_EQ(sc->certFor("site.test"), 0u);
  EXPECT_EQ(sc->certFor("OTHER.test."), 1u);
  EXPECT_EQ(sc->certFor("x.wild.test"), 1u);
  EXPECT_EQ(sc->certFor("a.b.wild.test"), 0u);  // a wildcard covers one label
  EXPECT_EQ(sc->certFor("wild.test"), 0u);
  EXPECT_EQ(sc->certFor("cn.test"), 2u);
  EXPECT_EQ(sc->certFor("unknown.test"), 0u);

  // The client verifies the name it sent: success proves the right certificate came.
  for (const char* name : {"site.test", "www.site.test", "other.test", "x.wild.test", "cn.test"}) {
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*client("ca.crt", name));
    EXPECT_TRUE(testing::handshake(*c, *s)) << name << ": " << c->error();
    EXPECT_EQ(s->info().sni, name);
  }
  // An unknown name gets the default certificate, which does not carry it.
  auto s = Engine::accept(*sc);
  auto c = Engine::connect(*client("ca.crt", "unknown.test"));
  EXPECT_FALSE(testing::handshake(*c, *s));
  EXPECT_EQ(c->error(), "certificate verify failed: hostname mismatch");
}

TEST_F(TlsEngineTest, AlpnServerPreferenceAndNoOverlap) {
  auto sc = server({"site.pem"}, {"h2", "http/1.1"});
  struct Case {
    std::vector<std::string> offer;
    std::string agreed;
  } cases[] = {
      {{"http/1.1"}, "http/1.1"},
      {{"http/1.1", "h2"}, "h2"},  // the bind's order wins
      {{"spdy/3"}, ""},            // nothing in common: no ALPN, not a failure
      {{}, ""},
  };
  for (const auto& k : cases) {
    auto s = Engine::accept(*sc);
    auto cc = client("ca.crt", "site.test", k.offer);
    auto c = Engine::connect(*cc);
    ASSERT_TRUE(testing::handshake(*c, *s)) << c->error() << " / " << s->error();
    EXPECT_EQ(s->info().alpn, k.agreed);
    EXPECT_EQ(c->info().alpn, k.agreed);
  }
}

TEST_F(TlsEngineTest, MinVersionRefusesOlderClients) {
  auto sc = server({"site.pem"}, {}, "1.2");
  auto cc = client("ca.crt", "site.test");
  // A client that can only speak TLS 1.1 (security level 0, or OpenSSL 3 will not even
  // offer it): the server must refuse, not the client give up.
  SSL_CTX_set_security_level(cc->ctx(), 0);
  SSL_CTX_set_min_proto_version(cc->ctx(), TLS1_1_VERSION);
  SSL_CTX_set_max_proto_version(cc->ctx(), TLS1_1_VERSION);
  SSL_CTX_set_cipher_list(cc->ctx(), "DEFAULT@SECLEVEL=0");
  auto s = Engine::accept(*sc);
  auto c = Engine::connect(*cc);
  EXPECT_FALSE(testing::handshake(*c, *s));
  EXPECT_EQ(s->handshake(), Progress::kFailed);
  EXPECT_EQ(c->handshake(), Progress::kFailed);  // the server's alert arrived
  EXPECT_NE(s->error().find("unsupported protocol"), std::string::npos) << s->error();
  EXPECT_NE(c->error().find("protocol version"), std::string::npos) << c->error();

  // TLS 1.2 is still fine.
  auto cc12 = client("ca.crt", "site.test");
  SSL_CTX_set_max_proto_version(cc12->ctx(), TLS1_2_VERSION);
  auto s2 = Engine::accept(*sc);
  auto c2 = Engine::connect(*cc12);
  ASSERT_TRUE(testing::handshake(*c2, *s2)) << c2->error() << " / " << s2->error();
  EXPECT_EQ(s2->info().version, "TLSv1.2");
}

TEST_F(TlsEngineTest, VerificationFailsWithWrongCaOrName) {
  auto sc = server({"site.pem"});
  {
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*client("other-ca.crt", "site.test"));
    EXPECT_FALSE(testing::handshake(*c, *s));
    EXPECT_EQ(c->error(), "certificate verify failed: unable to get local issuer certificate");
    // The server hears the alert.
    EXPECT_EQ(s->handshake(), Progress::kFailed);
    EXPECT_NE(s->error().find("unknown ca"), std::string::npos) << s->error();
  }
  {
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*client("ca.crt", "wrong.test"));
    EXPECT_FALSE(testing::handshake(*c, *s));
    EXPECT_EQ(c->error(), "certificate verify failed: hostname mismatch");
  }
  {  // verify = "none" accepts anything
    TlsServerConfig cfg;
    cfg.enabled = true;
    cfg.verify = false;
    cfg.sni = "wrong.test";
    auto cc = ClientContext::create(cfg, *Address::parse("127.0.0.1:443"));
    ASSERT_TRUE(cc.ok()) << cc.message();
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(**cc);
    EXPECT_TRUE(testing::handshake(*c, *s)) << c->error();
  }
  {  // The system store does not know our test CA.
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*client("", "site.test"));
    EXPECT_FALSE(testing::handshake(*c, *s));
    EXPECT_NE(c->error().find("certificate verify failed"), std::string::npos) << c->error();
  }
}

TEST_F(TlsEngineTest, WithoutSniTheServerIpIsVerified) {
  auto sc = server({"ip.pem"});
  {
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*client("ca.crt", "", {}, "127.0.0.1:8443"));
    EXPECT_TRUE(testing::handshake(*c, *s)) << c->error();
    EXPECT_EQ(s->info().sni, "");  // none sent
  }
  {
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*client("ca.crt", "", {}, "127.0.0.2:8443"));
    EXPECT_FALSE(testing::handshake(*c, *s));
    EXPECT_EQ(c->error(), "certificate verify failed: IP address mismatch");
  }
  {  // an IP written as sni is verified as an IP, and not sent
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*client("ca.crt", "127.0.0.1", {}, "10.0.0.1:8443"));
    EXPECT_TRUE(testing::handshake(*c, *s)) << c->error();
    EXPECT_EQ(s->info().sni, "");
  }
}

TEST_F(TlsEngineTest, DataBothWaysAtRandomSplits) {
  auto sc = server({"site.pem"});
  auto cc = client("ca.crt", "site.test");
  std::mt19937 rng(1234);
  for (size_t max_piece : {size_t{1}, size_t{7}, size_t{300}, size_t{5000}, size_t{40000}}) {
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*cc);
    // The handshake itself crosses in pieces too.
    bool done = false;
    for (int i = 0; i < 20 && !done; ++i) {
      auto cp = c->handshake();
      testing::transfer(*c, *s, &rng, max_piece);
      auto sp = s->handshake();
      testing::transfer(*s, *c, &rng, max_piece);
      ASSERT_NE(cp, Progress::kFailed) << c->error();
      ASSERT_NE(sp, Progress::kFailed) << s->error();
      done = cp == Progress::kDone && sp == Progress::kDone;
    }
    ASSERT_TRUE(done);
    std::string up(70000 + max_piece, '\0'), down(50000, '\0');
    for (auto& ch : up) ch = static_cast<char>(rng());
    for (auto& ch : down) ch = static_cast<char>(rng());
    // Written in uneven slices, read while arriving in random pieces.
    for (size_t at = 0; at < up.size(); at += 9000) {
      ASSERT_TRUE(c->write(up.data() + at, std::min<size_t>(9000, up.size() - at)));
    }
    ASSERT_TRUE(s->write(down.data(), down.size()));
    std::vector<Buffer> wire;
    c->takeOutput(wire);
    std::string got_up;
    for (auto& piece : testing::pieces(testing::join(wire), rng, max_piece)) {
      s->input(std::move(piece));
      got_up += testing::drain(*s);
    }
    EXPECT_FALSE(s->hasInput());
    testing::transfer(*s, *c, &rng, max_piece);
    std::string got_down = testing::drain(*c);
    EXPECT_EQ(got_up, up) << "max_piece " << max_piece;
    EXPECT_EQ(got_down, down) << "max_piece " << max_piece;
  }
}

TEST_F(TlsEngineTest, ReadStopsAtTheBufferAndKeepsTheRest) {
  auto sc = server({"site.pem"});
  auto cc = client("ca.crt", "site.test");
  auto s = Engine::accept(*sc);
  auto c = Engine::connect(*cc);
  ASSERT_TRUE(testing::handshake(*c, *s));
  std::string msg(40000, 'x');
  ASSERT_TRUE(c->write(msg.data(), msg.size()));
  testing::transfer(*c, *s);
  Buffer small = BufferPool::local().take();
  small.commit(small.capacity() - 100);  // 100 bytes of room
  ASSERT_EQ(s->read(small), ReadResult::kData);
  EXPECT_EQ(small.size(), small.capacity());
  EXPECT_TRUE(s->hasInput());
  EXPECT_EQ(testing::drain(*s).size(), msg.size() - 100);
  EXPECT_FALSE(s->hasInput());
}

TEST_F(TlsEngineTest, CloseNotifyBothWays) {
  auto sc = server({"site.pem"});
  auto cc = client("ca.crt", "site.test");
  auto s = Engine::accept(*sc);
  auto c = Engine::connect(*cc);
  ASSERT_TRUE(testing::handshake(*c, *s));
  ASSERT_TRUE(c->write("bye", 3));
  c->close();
  EXPECT_FALSE(c->write("late", 4));  // nothing after close_notify
  testing::transfer(*c, *s);
  ReadResult last;
  EXPECT_EQ(testing::drain(*s, &last), "bye");
  EXPECT_EQ(last, ReadResult::kClosed);
  EXPECT_TRUE(s->peerClosed());
  // Half-closed: the server still talks, then closes too.
  ASSERT_TRUE(s->write("ok", 2));
  s->close();
  testing::transfer(*s, *c);
  EXPECT_EQ(testing::drain(*c, &last), "ok");
  EXPECT_EQ(last, ReadResult::kClosed);
}

TEST_F(TlsEngineTest, GarbageFailsTheHandshake) {
  auto sc = server({"site.pem"});
  auto s = Engine::accept(*sc);
  Buffer b = BufferPool::local().take();
  b.append("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  s->input(std::move(b));
  EXPECT_EQ(s->handshake(), Progress::kFailed);
  EXPECT_FALSE(s->error().empty());
  Buffer out = BufferPool::local().take();
  EXPECT_EQ(s->read(out), ReadResult::kFailed);
  EXPECT_FALSE(s->write("x", 1));
}

// Resumption: the client context keeps the newest session, the bind's tickets are
// encrypted with the process's keys; the previous key still decrypts after a rotation.
TEST_F(TlsEngineTest, TicketsResumeAcrossOneKeyRotation) {
  auto sc = server({"site.pem"});
  auto cc = client("ca.crt", "site.test");
  auto connect = [&]() {
    auto s = Engine::accept(*sc);
    auto c = Engine::connect(*cc);
    EXPECT_TRUE(testing::handshake(*c, *s)) << c->error();
    // TLS 1.3 tickets come after the handshake: the client reads them.
    EXPECT_TRUE(s->write("hi", 2));
    testing::transfer(*s, *c);
    EXPECT_EQ(testing::drain(*c), "hi");
    EXPECT_EQ(s->info().resumed, c->info().resumed);
    return s->info().resumed;
  };
  EXPECT_FALSE(connect());
  EXPECT_TRUE(connect());
  rotateTicketKeys();
  EXPECT_TRUE(connect());  // old key: accepted, and a new ticket issued
  rotateTicketKeys();
  EXPECT_TRUE(connect());  // the renewed ticket uses the newest key
  rotateTicketKeys();
  rotateTicketKeys();
  EXPECT_FALSE(connect());  // two rotations later the key is gone: full handshake
  EXPECT_TRUE(connect());
}

// tickets = false: no ticket is issued; the bind's session cache still resumes.
TEST_F(TlsEngineTest, WithoutTicketsTheSessionCacheResumes) {
  TlsBindConfig cfg;
  cfg.certs = {{path("site.pem"), ""}};
  cfg.tickets = false;
  auto sc = ServerContext::create(cfg);
  ASSERT_TRUE(sc.ok()) << sc.message();
  EXPECT_NE(SSL_CTX_get_options((*sc)->ctx()) & SSL_OP_NO_TICKET, 0u);
  auto cc = client("ca.crt", "site.test");
  bool resumed[2];
  for (bool& r : resumed) {
    auto s = Engine::accept(**sc);
    auto c = Engine::connect(*cc);
    ASSERT_TRUE(testing::handshake(*c, *s)) << c->error();
    ASSERT_TRUE(s->write("hi", 2));
    testing::transfer(*s, *c);
    EXPECT_EQ(testing::drain(*c), "hi");
    r = s->info().resumed;
  }
  EXPECT_FALSE(resumed[0]);
  EXPECT_TRUE(resumed[1]);
}

TEST_F(TlsEngineTest, SeparateKeyFileAndCombinedPem) {
  TlsBindConfig cfg;
  cfg.certs.push_back({path("site.crt"), path("site.key")});
  cfg.certs.push_back({path("other.pem"), ""});
  auto r = ServerContext::create(cfg);
  ASSERT_TRUE(r.ok()) << r.message();
  // The key before the certificate in one file is fine too.
  std::string key_first =
      dir_->write("key-first.pem", testing::CertDir::read(path("site.key")) +
                                       testing::CertDir::read(path("site.crt")));
  cfg.certs = {{key_first, ""}};
  auto r2 = ServerContext::create(cfg);
  EXPECT_TRUE(r2.ok()) << r2.message();
}

TEST_F(TlsEngineTest, CertificateErrorsNameTheFileAndTheReason) {
  auto err = [](std::vector<TlsBindConfig::Cert> certs) {
    TlsBindConfig cfg;
    cfg.certs = std::move(certs);
    auto r = ServerContext::create(cfg);
    return r.ok() ? std::string("ok") : r.message();
  };
  EXPECT_EQ(err({{"/nonexistent/x.pem", ""}}),
            "cannot load certificate \"/nonexistent/x.pem\": No such file or directory");
  std::string garbage = dir_->write("garbage.pem", "not a certificate\n");
  EXPECT_EQ(err({{garbage, ""}}), "cannot load certificate \"" + garbage + "\": no start line");
  EXPECT_NE(err({{path("site.crt"), ""}})
                .find("cannot load certificate \"" + path("site.crt") + "\": no private key in it"),
            std::string::npos);
  EXPECT_EQ(err({{path("site.crt"), path("other.key")}}),
            "cannot load certificate \"" + path("site.crt") + "\": the key \"" + path("other.key") +
                "\" does not match the certificate");
  EXPECT_EQ(err({{path("site.crt"), "/nonexistent/k.key"}}),
            "cannot load key \"/nonexistent/k.key\": No such file or directory");
  // A later certificate's error is reported the same way.
  EXPECT_EQ(err({{path("site.pem"), ""}, {"/nonexistent/y.pem", ""}}),
            "cannot load certificate \"/nonexistent/y.pem\": No such file or directory");

  TlsBindConfig bad_ciphers;
  bad_ciphers.certs = {{path("site.pem"), ""}};
  bad_ciphers.ciphers = "NOT-A-CIPHER";
  auto r = ServerContext::create(bad_ciphers);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("invalid ciphers \"NOT-A-CIPHER\""), std::string::npos);
}

TEST_F(TlsEngineTest, BuildContextsPlacesErrorsInTheConfig) {
  Config config;
  config.path = "cfg.lua";
  FrontendConfig fe;
  fe.name = "f";
  BindConfig plain;
  plain.line = 3;
  BindConfig tls;
  tls.line = 4;
  tls.tls.certs = {{path("site.pem"), ""}};
  fe.binds = {plain, tls};
  config.frontends.push_back(fe);
  BackendConfig be;
  be.name = "b";
  ServerConfig s1;
  s1.name = "s1";
  s1.address = *Address::parse("127.0.0.1:443");
  s1.line = 9;
  s1.tls.enabled = true;
  s1.tls.ca = path("ca.crt");
  be.servers = {s1};
  config.backends.push_back(be);

  auto ok = buildContexts(config);
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ((*ok)->bind(0, 0), nullptr);
  EXPECT_NE((*ok)->bind(0, 1), nullptr);
  EXPECT_NE((*ok)->server(0, 0), nullptr);
  EXPECT_EQ((*ok)->server(1, 0), nullptr);

  config.frontends[0].binds[1].tls.certs = {{"missing.pem", ""}};
  auto bad = buildContexts(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.message(),
            "cfg.lua:4: frontend \"f\": bind: cannot load certificate \"missing.pem\": No such "
            "file or directory");

  config.frontends[0].binds[1].tls.certs = {{path("site.pem"), ""}};
  config.backends[0].servers[0].tls.ca = path("site.key");  // no certificate in it
  bad = buildContexts(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.message(), "cfg.lua:9: backend \"b\": server \"s1\": cannot load CA file \"" +
                               path("site.key") + "\": no certificate or crl found");

  config.backends[0].servers[0].tls.ca = "missing-ca.pem";
  bad = buildContexts(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.message(),
            "cfg.lua:9: backend \"b\": server \"s1\": cannot load CA file \"missing-ca.pem\": No "
            "such file or directory");
}

}  // namespace
}  // namespace crescent::core::tls
