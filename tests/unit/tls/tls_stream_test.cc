// TLS inside Stream on real loopback sockets: both handshakes reported once, plaintext
// both ways with back-pressure, close_notify then FIN on shutdown(), bytes read before
// startTls kept, writes before the handshake kept, failures reported with a reason, and
// plaintext left by a handler that stopped reading delivered when it reads again.
// Every test ends with uv_loop_close() == 0.
#include "core/tls/tls_stream.h"

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>

#include "core/net/listener.h"
#include "core/net/timer.h"
#include "core/tls/tls_context.h"
#include "tls_test_util.h"

namespace crescent::core::tls {
namespace {

// One end of a connection: records what its stream reports.
struct Peer : StreamHandler {
  StreamPtr s;
  int ready = 1;  // 1: not reported yet
  int ready_calls = 0;
  std::string got;
  bool eof = false;
  int error = 0;
  bool shutdown_done = false;
  int drained = 0;
  bool echo = false;
  std::function<void(Peer&)> on_ready;
  std::function<void(Peer&, Buffer&)> on_data;

  void onStreamTlsReady(Stream&, int status) override {
    ready = status;
    ++ready_calls;
    if (on_ready) on_ready(*this);
  }
  void onStreamData(Stream& st, Buffer d) override {
    if (on_data) on_data(*this, d);
    got.append(d.view());
    if (echo) st.write(std::move(d));
  }
  void onStreamEof(Stream&) override { eof = true; }
  void onStreamError(Stream&, int e) override { error = e; }
  void onStreamShutdownDone(Stream&) override { shutdown_done = true; }
  void onStreamDrained(Stream&) override { ++drained; }
};

class TlsStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::CertDir();
    dir_->makeCa("ca");
    dir_->makeCa("other-ca");
    dir_->makeLeaf("site", "ca", "site.test", {"DNS:site.test"});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    TlsBindConfig b;
    b.certs = {{dir_->path("site.pem"), ""}};
    b.alpn = {"http/1.1"};
    auto sc = ServerContext::create(b);
    ASSERT_TRUE(sc.ok()) << sc.message();
    server_ctx_ = std::move(*sc);
    client_ctx_ = clientContext("ca.crt");
  }
  void TearDown() override {
    client_.s.reset();
    server_.s.reset();
    EXPECT_EQ(loop_.close(), 0);
  }

  std::unique_ptr<ClientContext> clientContext(const std::string& ca) {
    TlsServerConfig c;
    c.enabled = true;
    c.ca = dir_->path(ca);
    c.sni = "site.test";
    c.alpn = {"http/1.1"};
    auto cc = ClientContext::create(c, *Address::parse("127.0.0.1:443"));
    EXPECT_TRUE(cc.ok()) << cc.message();
    return std::move(*cc);
  }

  // Connects client_.s to server_.s over loopback (plain, no TLS yet).
  void connect() {
    auto fd = openListenSocket(*Address::parse("127.0.0.1:0"));
    ASSERT_TRUE(fd.ok()) << fd.message();
    Address bound = socketLocalAddress(*fd);
    struct Ctx : ListenerHandler {
      StreamPtr accepted;
      void onListenerPending(Listener& l) override { accepted = l.accept(); }
    } ctx;
    auto l = Listener::open(loop_, *fd, false, ctx);
    ASSERT_TRUE(l.ok());
    client_.s = Stream::create(loop_, Stream::Kind::kTcp);
    client_.s->setHandler(&client_);
    ASSERT_EQ(client_.s->connect(bound), 0);
    for (int i = 0; i < 1000 && !ctx.accepted; ++i) uv_run(loop_.uv(), UV_RUN_ONCE);
    server_.s = std::move(ctx.accepted);
    server_.s->setHandler(&server_);
    l->reset();
    runUntil([] { return false; }, 20);  // the client's connect callback
  }

  void startBoth() {
    ASSERT_EQ(startTls(*server_.s, *server_ctx_), 0);
    ASSERT_EQ(startTls(*client_.s, *client_ctx_), 0);
  }

  void runUntil(const std::function<bool()>& done, uint64_t limit_ms) {
    uint64_t deadline = loop_.now() + limit_ms;
    auto guard = Timer::create(
        loop_, [](void*) {}, nullptr);
    guard->start(limit_ms);
    while (!done() && loop_.now() < deadline) uv_run(loop_.uv(), UV_RUN_ONCE);
  }

  static testing::CertDir* dir_;
  EventLoop loop_;
  std::unique_ptr<ServerContext> server_ctx_;
  std::unique_ptr<ClientContext> client_ctx_;
  Peer client_, server_;
};

testing::CertDir* TlsStreamTest::dir_ = nullptr;

TEST_F(TlsStreamTest, HandshakeThenPlaintextBothWaysThenCloseNotify) {
  connect();
  startBoth();
  EXPECT_EQ(client_.ready_calls, 0);  // never from inside startTls
  runUntil([&] { return client_.ready != 1 && server_.ready != 1; }, 3000);
  ASSERT_EQ(client_.ready, 0) << client_.s->tlsError();
  ASSERT_EQ(server_.ready, 0) << server_.s->tlsError();
  const Info* si = tlsInfo(*server_.s);
  const Info* ci = tlsInfo(*client_.s);
  ASSERT_NE(si, nullptr);
  ASSERT_NE(ci, nullptr);
  EXPECT_EQ(si->sni, "site.test");
  EXPECT_EQ(si->alpn, "http/1.1");
  EXPECT_EQ(ci->alpn, "http/1.1");
  EXPECT_EQ(si->cipher, ci->cipher);

  // 600 KB up, echoed back.
  server_.echo = true;
  std::string payload(600 * 1024, '\0');
  std::mt19937 rng(7);
  for (auto& c : payload) c = static_cast<char>(rng());
  for (size_t at = 0; at < payload.size(); at += 16000) client_.s->write(payload.substr(at, 16000));
  runUntil([&] { return client_.got.size() >= payload.size(); }, 10000);
  EXPECT_EQ(client_.got.size(), payload.size());
  EXPECT_TRUE(client_.got == payload);
  // Bytes on the socket are ciphertext: more than the plaintext.
  EXPECT_GT(client_.s->bytesOut(), payload.size());
  EXPECT_GT(client_.s->bytesIn(), payload.size());

  // shutdown(): close_notify then FIN; the peer sees one EOF and can still answer.
  client_.s->shutdown();
  runUntil([&] { return server_.eof && client_.shutdown_done; }, 3000);
  EXPECT_TRUE(server_.eof);
  EXPECT_TRUE(client_.shutdown_done);
  EXPECT_TRUE(server_.s->filter() != nullptr &&
              static_cast<Engine*>(server_.s->filter())->peerClosed());
  server_.echo = false;
  server_.s->write(std::string("last words"));
  server_.s->shutdown();
  runUntil([&] { return client_.eof && server_.shutdown_done; }, 3000);
  EXPECT_TRUE(client_.got.size() == payload.size() + 10);
  EXPECT_EQ(client_.got.substr(payload.size()), "last words");
  EXPECT_TRUE(client_.eof);
  EXPECT_EQ(client_.error, 0);
  EXPECT_EQ(server_.error, 0);
  EXPECT_EQ(client_.ready_calls, 1);
  EXPECT_EQ(server_.ready_calls, 1);
}

// Back-pressure counts the ciphertext queued: a peer that does not read fills it above
// the high-water mark, and onStreamDrained comes once it reads again.
TEST_F(TlsStreamTest, PendingCiphertextGivesBackPressure) {
  connect();
  startBoth();
  server_.on_ready = [](Peer& p) { p.s->readStop(); };
  runUntil([&] { return client_.ready == 0 && server_.ready == 0; }, 3000);
  ASSERT_EQ(client_.ready, 0);
  std::string chunk(16000, 'p');
  size_t sent = 0;
  for (int i = 0; i < 2000 && !client_.s->aboveHighWater(); ++i) {
    client_.s->write(chunk);
    sent += chunk.size();
    runUntil([] { return false; }, 1);
  }
  ASSERT_TRUE(client_.s->aboveHighWater());
  EXPECT_GT(client_.s->pendingBytes(), 0u);
  server_.s->readStart();
  runUntil([&] { return client_.drained > 0 && server_.got.size() == sent; }, 10000);
  EXPECT_EQ(client_.drained, 1);
  EXPECT_EQ(server_.got.size(), sent);
  EXPECT_EQ(client_.s->pendingBytes(), 0u);
}

// The accept side read the first bytes in plain (as the PROXY header stage does), then
// starts TLS with them: nothing is lost.
TEST_F(TlsStreamTest, BytesReadBeforeStartTlsAreKept) {
  connect();
  Buffer first;
  server_.on_data = [&](Peer& p, Buffer& d) {
    first = std::move(d);
    d = Buffer();
    p.s->readStop();
  };
  server_.s->readStart();
  ASSERT_EQ(startTls(*client_.s, *client_ctx_), 0);
  runUntil([&] { return !first.empty(); }, 3000);
  ASSERT_FALSE(first.empty());  // the ClientHello, or its start
  server_.on_data = nullptr;
  ASSERT_EQ(startTls(*server_.s, *server_ctx_, std::move(first)), 0);
  runUntil([&] { return client_.ready != 1 && server_.ready != 1; }, 3000);
  EXPECT_EQ(client_.ready, 0) << client_.s->tlsError();
  EXPECT_EQ(server_.ready, 0) << server_.s->tlsError();
}

TEST_F(TlsStreamTest, WritesBeforeTheHandshakeAreSentAfterIt) {
  connect();
  startBoth();
  client_.s->write(std::string("early "));
  client_.s->write(std::string("bird"));
  runUntil([&] { return server_.got == "early bird"; }, 3000);
  EXPECT_EQ(server_.got, "early bird");
}

TEST_F(TlsStreamTest, VerificationFailureIsReportedWithTheReason) {
  client_ctx_ = clientContext("other-ca.crt");
  connect();
  startBoth();
  runUntil([&] { return client_.ready != 1 && server_.ready != 1; }, 3000);
  EXPECT_EQ(client_.ready, UV_EPROTO);
  EXPECT_EQ(client_.s->tlsError(),
            "certificate verify failed: unable to get local issuer certificate");
  EXPECT_LT(server_.ready, 0);  // the client's alert
  EXPECT_NE(server_.s->tlsError().find("unknown ca"), std::string::npos) << server_.s->tlsError();
  EXPECT_EQ(tlsInfo(*client_.s), nullptr);
  EXPECT_EQ(client_.ready_calls, 1);
}

TEST_F(TlsStreamTest, PlainTextOrCloseInsteadOfAHandshake) {
  connect();
  ASSERT_EQ(startTls(*server_.s, *server_ctx_), 0);
  client_.s->write(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  runUntil([&] { return server_.ready != 1; }, 3000);
  EXPECT_EQ(server_.ready, UV_EPROTO);
  EXPECT_FALSE(server_.s->tlsError().empty());

  // A peer that closes before finishing.
  server_.s.reset();
  client_.s.reset();
  server_ = Peer();
  client_ = Peer();
  connect();
  ASSERT_EQ(startTls(*server_.s, *server_ctx_), 0);
  client_.s->shutdown();
  runUntil([&] { return server_.ready != 1; }, 3000);
  EXPECT_EQ(server_.ready, UV_EOF);
  EXPECT_EQ(server_.s->tlsError(), "connection closed during the handshake");
}

// A handler that stops reading in the middle of a burst (back-pressure) or hands the
// stream over finds the rest when it reads again, though the peer sends nothing new.
TEST_F(TlsStreamTest, PlaintextKeptWhileNotReadingIsDeliveredOnReadStart) {
  connect();
  startBoth();
  runUntil([&] { return client_.ready == 0 && server_.ready == 0; }, 3000);
  ASSERT_EQ(server_.ready, 0);
  server_.on_data = [](Peer& p, Buffer&) { p.s->readStop(); };  // one record, then stop
  for (int i = 0; i < 50; ++i) client_.s->write(std::string(100, static_cast<char>('a' + i % 26)));
  runUntil([&] { return !server_.got.empty(); }, 3000);
  runUntil([] { return false; }, 100);  // every record has arrived by now
  EXPECT_EQ(server_.got.size(), 100u);  // one record per delivery
  server_.on_data = nullptr;
  server_.s->readStart();
  runUntil([&] { return server_.got.size() == 5000; }, 3000);
  EXPECT_EQ(server_.got.size(), 5000u);
  EXPECT_EQ(server_.got.substr(4900), std::string(100, 'x'));
  EXPECT_FALSE(server_.eof);
  // A FIN that arrives while not reading comes after the data kept.
  server_.on_data = [](Peer& p, Buffer&) { p.s->readStop(); };
  client_.s->write(std::string("tail"));
  client_.s->shutdown();
  runUntil([&] { return server_.got.size() == 5004; }, 3000);
  runUntil([] { return false; }, 100);
  EXPECT_FALSE(server_.eof);
  server_.on_data = nullptr;
  server_.s->readStart();
  runUntil([&] { return server_.eof; }, 3000);
  EXPECT_TRUE(server_.eof);
  EXPECT_EQ(server_.got.size(), 5004u);
}

}  // namespace
}  // namespace crescent::core::tls
