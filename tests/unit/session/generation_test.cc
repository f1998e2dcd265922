// What a reload carries from one generation to the next (DESIGN §3, docs/reload.md):
// frontend and backend counters by name; server health, admin state, counters and idle
// connection identity when backend name, server name, address and transport match.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/net/event_loop.h"
#include "core/net/timer.h"
#include "core/session/generation.h"

namespace crescent::core {
namespace {

ServerConfig server(const std::string& name, const std::string& addr) {
  ServerConfig sc;
  sc.name = name;
  sc.text = addr;
  sc.address = *Address::parse(addr);
  return sc;
}

std::shared_ptr<Config> config(const std::string& s1_addr, bool tls = false) {
  auto cfg = std::make_shared<Config>();
  BackendConfig be;
  be.name = "app";
  be.servers.push_back(server("s1", s1_addr));
  be.servers.back().tls.enabled = tls;
  be.servers.push_back(server("s2", "127.0.0.1:9002"));
  cfg->backends.push_back(be);
  BackendConfig other;
  other.name = "other";
  other.servers.push_back(server("s1", "127.0.0.1:9003"));
  cfg->backends.push_back(other);
  FrontendConfig fe;
  fe.name = "web";
  cfg->frontends.push_back(fe);
  return cfg;
}

TEST(GenerationCarryOver, SameServerKeepsHealthAdminCountersAndPoolKey) {
  Generation g1(1, config("127.0.0.1:9001"));
  Server& old_s1 = *g1.backend(0).servers()[0];
  old_s1.setUp(false, "test");
  old_s1.setAdmin(AdminState::kDrain, "test");
  old_s1.tryAcquire();
  old_s1.release();
  g1.backend(0).acquire();
  g1.frontendStats(0).requests.fetch_add(5);

  // The new config lists the backends in another order: names match, not positions.
  auto cfg2 = config("127.0.0.1:9001");
  std::swap(cfg2->backends[0], cfg2->backends[1]);
  Generation g2(2, cfg2, nullptr, &g1);
  Server& new_s1 = *g2.backend(1).servers()[0];
  ASSERT_EQ(g2.backend(1).name(), "app");
  EXPECT_FALSE(new_s1.up());
  EXPECT_EQ(new_s1.admin(), AdminState::kDrain);
  EXPECT_EQ(new_s1.total(), 1u);
  EXPECT_EQ(new_s1.poolKey(), old_s1.poolKey());
  EXPECT_EQ(g2.backend(1).total(), 1u);
  EXPECT_EQ(g2.frontendStats(0).requests.load(), 5u);
  // "other/s1" is another server, though named s1 too.
  EXPECT_NE(g2.backend(0).servers()[0]->poolKey(), old_s1.poolKey());
  EXPECT_TRUE(g2.backend(0).servers()[0]->up());

  // Shared, not copied: what the old generation's sessions do still counts, and a state
  // set through either generation is the server's.
  old_s1.tryAcquire();
  old_s1.release();
  EXPECT_EQ(new_s1.total(), 2u);
  new_s1.setAdmin(AdminState::kReady, "test");
  EXPECT_EQ(old_s1.admin(), AdminState::kReady);
  // One slot count for the server, whatever the generation: a tunnel of the old
  // generation counts against the new one's maxconn (and leastconn).
  old_s1.tryAcquire();
  EXPECT_EQ(old_s1.current(), 1);
  EXPECT_EQ(new_s1.current(), 1);
  old_s1.release();
  EXPECT_EQ(new_s1.current(), 0);
}

// Records grants (on its loop's thread).
struct Waiter : QueueTicket::Waiter {
  Server* granted = nullptr;
  void onQueueGranted(Server& s) override { granted = &s; }
};

TEST(GenerationCarryOver, ASlotFreedInTheOldGenerationGoesToTheNewOnesQueue) {
  auto cfg1 = config("127.0.0.1:9001");
  cfg1->backends[0].servers[0].maxconn = 1;
  auto g1 = std::make_unique<Generation>(1, cfg1);
  auto cfg2 = config("127.0.0.1:9001");
  cfg2->backends[0].servers[0].maxconn = 1;
  Generation g2(2, cfg2, nullptr, g1.get());
  Server& old_s1 = *g1->backend(0).servers()[0];
  Server& new_s1 = *g2.backend(0).servers()[0];

  ASSERT_TRUE(old_s1.tryAcquire());  // an old generation's tunnel holds the only slot
  EventLoop loop;
  Waiter w;
  auto a = g2.backend(0).assign(&new_s1, w, loop);
  ASSERT_EQ(a.kind, Backend::Assignment::Kind::kQueued);  // full across generations
  old_s1.release();
  // The grant is posted to the loop: run it until the grant or 2 s of loop time.
  bool expired = false;
  auto guard = Timer::create(
      loop, [](void* e) { *static_cast<bool*>(e) = true; }, &expired);
  guard->start(2000);
  while (w.granted == nullptr && !expired) uv_run(loop.uv(), UV_RUN_ONCE);
  guard.reset();
  EXPECT_EQ(w.granted, &new_s1);
  EXPECT_EQ(new_s1.current(), 1);
  new_s1.release();

  // The old generation goes (its last session ended): the new one goes on alone.
  g1.reset();
  ASSERT_TRUE(new_s1.tryAcquire());
  new_s1.release();
  EXPECT_EQ(new_s1.current(), 0);
  EXPECT_EQ(loop.close(), 0);
}

TEST(GenerationCarryOver, ChangedAddressOrTransportIsANewServer) {
  Generation g1(1, config("127.0.0.1:9001"));
  Server& old_s1 = *g1.backend(0).servers()[0];
  old_s1.setAdmin(AdminState::kMaint, "test");

  Generation moved(2, config("127.0.0.1:9011"), nullptr, &g1);
  EXPECT_EQ(moved.backend(0).servers()[0]->admin(), AdminState::kReady);
  EXPECT_NE(moved.backend(0).servers()[0]->poolKey(), old_s1.poolKey());
  // s2 did not change: it keeps its identity.
  EXPECT_EQ(moved.backend(0).servers()[1]->poolKey(), g1.backend(0).servers()[1]->poolKey());

  Generation tls(3, config("127.0.0.1:9001", true), nullptr, &g1);
  EXPECT_EQ(tls.backend(0).servers()[0]->admin(), AdminState::kReady);
  EXPECT_NE(tls.backend(0).servers()[0]->poolKey(), old_s1.poolKey());
}

TEST(GenerationCarryOver, SessionsCountPerGeneration) {
  Generation g1(1, config("127.0.0.1:9001"));
  Generation g2(2, config("127.0.0.1:9001"), nullptr, &g1);
  g1.sessionIn();
  g1.sessionIn();
  // A keep-alive connection moving to the new generation.
  g1.sessionOut();
  g2.sessionIn();
  EXPECT_EQ(g1.sessions(), 1);
  EXPECT_EQ(g2.sessions(), 1);
  EXPECT_GE(g2.createdMs(), g1.createdMs());
}

}  // namespace
}  // namespace crescent::core
