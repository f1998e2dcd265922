#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/backend/source_binding.h"
#include "core/net/event_loop.h"
#include "core/net/stream.h"

using crescent::core::Address;
using crescent::core::EventLoop;
using crescent::core::SourceConfig;
using crescent::core::SourcePicker;
using crescent::core::Stream;

namespace {

SourceConfig sources(std::vector<std::string> ips, uint16_t lo = 0, uint16_t hi = 0) {
  SourceConfig cfg;
  for (const std::string& ip : ips) {
    auto a = Address::parse(ip.find(':') != std::string::npos ? "[" + ip + "]:0" : ip + ":0");
    EXPECT_TRUE(a.ok()) << ip;
    cfg.addresses.push_back(*a);
  }
  cfg.port_min = lo;
  cfg.port_max = hi;
  return cfg;
}

}  // namespace

TEST(SourcePicker, AddressesInTurnWithoutPort) {
  SourceConfig cfg = sources({"127.0.0.2", "127.0.0.3", "::1"});
  SourcePicker p(cfg);
  EXPECT_EQ(p.choices(), 3u);
  std::vector<std::string> seen;
  for (int i = 0; i < 7; ++i) {
    SourcePicker::Choice c = p.next();
    EXPECT_TRUE(c.no_port);  // the kernel picks the port at connect()
    EXPECT_EQ(c.local.port(), 0);
    seen.push_back(c.local.ip());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"127.0.0.2", "127.0.0.3", "::1", "127.0.0.2",
                                            "127.0.0.3", "::1", "127.0.0.2"}));
}

TEST(SourcePicker, OneAddressIsOneChoice) {
  SourceConfig cfg = sources({"127.0.0.2"});
  SourcePicker p(cfg);
  EXPECT_EQ(p.choices(), 1u);
  EXPECT_EQ(p.next().local.toString(), "127.0.0.2:0");
  EXPECT_EQ(p.next().local.toString(), "127.0.0.2:0");
}

TEST(SourcePicker, PortsInTurnWithinTheRange) {
  SourceConfig cfg = sources({"127.0.0.2"}, 40000, 40003);
  SourcePicker p(cfg);
  EXPECT_EQ(p.choices(), 4u);
  std::vector<uint16_t> ports;
  for (int i = 0; i < 9; ++i) {
    SourcePicker::Choice c = p.next();
    EXPECT_FALSE(c.no_port);  // an explicit port: bind() must take exactly that one
    EXPECT_EQ(c.local.ip(), "127.0.0.2");
    ports.push_back(c.local.port());
  }
  EXPECT_EQ(ports,
            (std::vector<uint16_t>{40000, 40001, 40002, 40003, 40000, 40001, 40002, 40003, 40000}));
}

TEST(SourcePicker, AddressesTurnFastestAndEveryPairComesOncePerCycle) {
  SourceConfig cfg = sources({"127.0.0.2", "127.0.0.3"}, 20000, 20002);
  SourcePicker p(cfg);
  ASSERT_EQ(p.choices(), 6u);
  std::vector<std::string> first;
  std::set<std::string> cycle;
  for (size_t i = 0; i < p.choices(); ++i) {
    std::string s = p.next().local.toString();
    if (i < 4) first.push_back(s);
    cycle.insert(s);
  }
  EXPECT_EQ(first, (std::vector<std::string>{"127.0.0.2:20000", "127.0.0.3:20000",
                                             "127.0.0.2:20001", "127.0.0.3:20001"}));
  EXPECT_EQ(cycle.size(), 6u);                              // every (address, port) once
  EXPECT_EQ(p.next().local.toString(), "127.0.0.2:20000");  // and round again
}

TEST(SourcePicker, SinglePortRange) {
  SourceConfig cfg = sources({"127.0.0.2"}, 65535, 65535);
  SourcePicker p(cfg);
  EXPECT_EQ(p.choices(), 1u);
  EXPECT_EQ(p.next().local.port(), 65535);
  EXPECT_EQ(p.next().local.port(), 65535);
}

// The picker's choices as Stream::bindLocal() uses them: errors come back synchronously,
// which is what lets the connector move on to the next choice.
TEST(SourceBinding, BindLocalReportsTakenPortAtOnce) {
  // A listening socket holds 127.0.0.1:P; SO_REUSEADDR does not share a listening port.
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  uint16_t taken = ntohs(sin.sin_port);

  EventLoop loop;
  SourceConfig cfg = sources({"127.0.0.1"}, taken, taken);
  SourcePicker p(cfg);
  SourcePicker::Choice c = p.next();
  auto s = Stream::create(loop, Stream::Kind::kTcp);
  EXPECT_EQ(s->bindLocal(c.local, c.no_port), UV_EADDRINUSE);
  // Nothing was left behind: the same stream may bind elsewhere.
  SourceConfig free_cfg = sources({"127.0.0.1"});
  SourcePicker fp(free_cfg);
  c = fp.next();
  EXPECT_EQ(s->bindLocal(c.local, c.no_port), 0);
  // IP_BIND_ADDRESS_NO_PORT: the address is fixed, the port is left to connect().
  EXPECT_EQ(s->localAddress().ip(), "127.0.0.1");
  EXPECT_EQ(s->localAddress().port(), 0);
  // A second bind on a stream that has its socket is refused.
  EXPECT_EQ(s->bindLocal(c.local, c.no_port), UV_EINVAL);

  auto pipe = Stream::create(loop, Stream::Kind::kPipe);
  EXPECT_EQ(pipe->bindLocal(c.local, c.no_port), UV_EINVAL);

  s.reset();
  pipe.reset();
  ::close(lfd);
  EXPECT_EQ(loop.close(), 0);
}

TEST(SourceBinding, ConnectsFromTheBoundAddress) {
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  Address server = Address::fromSockaddr(reinterpret_cast<sockaddr*>(&sin), len);

  struct Handler : crescent::core::StreamHandler {
    void onStreamData(Stream&, crescent::core::Buffer) override {}
    void onStreamEof(Stream&) override {}
    void onStreamError(Stream&, int) override {}
    void onStreamConnected(Stream& s, int st) override {
      status = st;
      local = s.localAddress();
      s.setHandler(nullptr);
    }
    int status = 1;
    Address local;
  } h;

  EventLoop loop;
  SourceConfig cfg = sources({"127.0.0.2"});
  SourcePicker p(cfg);
  SourcePicker::Choice c = p.next();
  auto s = Stream::create(loop, Stream::Kind::kTcp);
  s->setHandler(&h);
  ASSERT_EQ(s->bindLocal(c.local, c.no_port), 0);
  ASSERT_EQ(s->connect(server), 0);
  for (int i = 0; i < 1000 && h.status == 1; ++i) uv_run(loop.uv(), UV_RUN_ONCE);
  EXPECT_EQ(h.status, 0);
  EXPECT_EQ(h.local.ip(), "127.0.0.2");
  EXPECT_NE(h.local.port(), 0);  // chosen by the kernel at connect()

  s.reset();
  ::close(lfd);
  EXPECT_EQ(loop.close(), 0);
}
