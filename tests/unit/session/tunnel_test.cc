// Tunnel behaviour on real loopback sockets: bytes flow both ways, half-close passes
// through, and `timeout tunnel` is an inactivity timeout reset by traffic in either
// direction (reference/000). Every test ends with uv_loop_close() == 0.
#include "core/session/tunnel.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/net/listener.h"
#include "core/net/timer.h"

namespace crescent::core {
namespace {

// Collects what a stream receives.
struct Sink : StreamHandler {
  std::string got;
  bool eof = false;
  bool error = false;
  std::function<void()> on_change;
  void onStreamData(Stream&, Buffer d) override {
    got.append(d.view());
    if (on_change) on_change();
  }
  void onStreamEof(Stream&) override {
    eof = true;
    if (on_change) on_change();
  }
  void onStreamError(Stream&, int) override {
    error = true;
    if (on_change) on_change();
  }
};

// A connected pair of streams over a loopback listener: `outer` is the test's end,
// `inner` the accepted end given to the tunnel.
struct Pair {
  StreamPtr outer, inner;
};

class TunnelTest : public ::testing::Test, public Tunnel::Owner {
 protected:
  Pair connectPair() {
    auto addr = Address::parse("127.0.0.1:0");
    auto fd = openListenSocket(*addr);
    EXPECT_TRUE(fd.ok()) << fd.message();
    Address bound = socketLocalAddress(*fd);
    Pair p;
    struct Ctx : ListenerHandler {
      StreamPtr accepted;
      void onListenerPending(Listener& l) override { accepted = l.accept(); }
    } ctx;
    auto l = Listener::open(loop_, *fd, false, ctx);
    EXPECT_TRUE(l.ok());
    p.outer = Stream::create(loop_, Stream::Kind::kTcp);
    EXPECT_EQ(p.outer->connect(bound), 0);
    for (int i = 0; i < 1000 && !ctx.accepted; ++i) uv_run(loop_.uv(), UV_RUN_ONCE);
    p.inner = std::move(ctx.accepted);
    l->reset();
    return p;
  }

  void onTunnelEnd(TunnelEnd why) override {
    ended_ = true;
    why_ = why;
    ended_at_ = loop_.now();
  }

  // Runs the loop until `done()` or `limit_ms` of loop time passed.
  void runUntil(const std::function<bool()>& done, uint64_t limit_ms) {
    uint64_t deadline = loop_.now() + limit_ms;
    auto guard = Timer::create(
        loop_, [](void*) {}, nullptr);
    guard->start(limit_ms);
    while (!done() && loop_.now() < deadline) uv_run(loop_.uv(), UV_RUN_ONCE);
  }

  void TearDown() override { EXPECT_EQ(loop_.close(), 0); }

  EventLoop loop_;
  bool ended_ = false;
  TunnelEnd why_ = TunnelEnd::kClosed;
  uint64_t ended_at_ = 0;
};

TEST_F(TunnelTest, ForwardsBothWaysAndHalfClose) {
  Pair client = connectPair(), server = connectPair();
  Sink at_client, at_server;
  client.outer->setHandler(&at_client);
  server.outer->setHandler(&at_server);
  client.outer->readStart();
  server.outer->readStart();
  TunnelTimeouts t;
  t.tunnel = 5000;
  auto tunnel = std::make_unique<Tunnel>(loop_, *client.inner, *server.inner, t, *this);
  tunnel->start(Buffer(), Buffer());

  client.outer->write(std::string("hello"));
  runUntil([&] { return at_server.got == "hello"; }, 2000);
  EXPECT_EQ(at_server.got, "hello");

  // Client half-closes: the server sees EOF, and can still answer.
  client.outer->shutdown();
  runUntil([&] { return at_server.eof; }, 2000);
  EXPECT_TRUE(at_server.eof);
  server.outer->write(std::string("world"));
  runUntil([&] { return at_client.got == "world"; }, 2000);
  EXPECT_EQ(at_client.got, "world");
  EXPECT_FALSE(ended_);

  server.outer->shutdown();
  runUntil([&] { return ended_; }, 2000);
  EXPECT_TRUE(ended_);
  EXPECT_EQ(why_, TunnelEnd::kClosed);
  client = {};
  server = {};
}

TEST_F(TunnelTest, ClosesAfterSilenceInBothDirections) {
  Pair client = connectPair(), server = connectPair();
  TunnelTimeouts t;
  t.tunnel = 200;
  auto tunnel = std::make_unique<Tunnel>(loop_, *client.inner, *server.inner, t, *this);
  uint64_t started = loop_.now();
  tunnel->start(Buffer(), Buffer());
  runUntil([&] { return ended_; }, 3000);
  ASSERT_TRUE(ended_);
  EXPECT_EQ(why_, TunnelEnd::kClientTimeout);
  EXPECT_GE(ended_at_ - started, 190u);
  EXPECT_LT(ended_at_ - started, 1500u);
}

// Traffic in only one direction keeps the tunnel open (inactivity is measured over both
// directions), for each direction.
TEST_F(TunnelTest, TrafficInOneDirectionKeepsItOpen) {
  for (int direction = 0; direction < 2; ++direction) {
    ended_ = false;
    Pair client = connectPair(), server = connectPair();
    Sink at_client, at_server;
    client.outer->setHandler(&at_client);
    server.outer->setHandler(&at_server);
    client.outer->readStart();
    server.outer->readStart();
    TunnelTimeouts t;
    t.tunnel = 300;
    auto tunnel = std::make_unique<Tunnel>(loop_, *client.inner, *server.inner, t, *this);
    tunnel->start(Buffer(), Buffer());
    Stream* talker = direction == 0 ? client.outer.get() : server.outer.get();
    struct Tick {
      Stream* s;
      int sent = 0;
      Timer* timer;
    } tick{talker, 0, nullptr};
    auto timer = Timer::create(
        loop_,
        [](void* c) {
          auto* t = static_cast<Tick*>(c);
          t->s->write(std::string("x"));
          if (++t->sent < 10) t->timer->start(100);
        },
        &tick);
    tick.timer = timer.get();
    timer->start(100);
    // 10 ticks of 100 ms = 1 s of one-way traffic, more than 3x the tunnel timeout.
    runUntil([&] { return tick.sent >= 10 || ended_; }, 3000);
    EXPECT_FALSE(ended_) << "direction " << direction;
    EXPECT_EQ(tick.sent, 10);
    // Then silence closes it.
    runUntil([&] { return ended_; }, 3000);
    EXPECT_TRUE(ended_);
    tunnel.reset();
  }
}

}  // namespace
}  // namespace crescent::core
