// Listener over a shared listening socket (core/net/listener.h): accepting, and a socket
// shut down under it (a reload removing a bind) must not make the loop spin.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/net/listener.h"
#include "core/net/timer.h"

namespace crescent::core {
namespace {

struct Counts {
  int pending = 0;
  StreamPtr accepted;
};

void onPending(void* ctx, Listener& l) {
  auto* c = static_cast<Counts*>(ctx);
  ++c->pending;
  c->accepted = l.accept();
}

int connectTo(const Address& a) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, a.sockaddrPtr(), a.sockaddrLen()) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Runs the loop for `ms` of loop time (a timer ends it). A loop stuck inside a callback
// never returns: ctest's timeout catches that.
void runFor(EventLoop& loop, uint64_t ms) {
  bool fired = false;
  auto t = Timer::create(
      loop, [](void* f) { *static_cast<bool*>(f) = true; }, &fired);
  t->start(ms);
  while (!fired) uv_run(loop.uv(), UV_RUN_ONCE);
}

TEST(Listener, AcceptsFromADupOfTheSocket) {
  auto fd = openListenSocket(*Address::parse("127.0.0.1:0"));
  ASSERT_TRUE(fd.ok()) << fd.message();
  Address bound = socketLocalAddress(*fd);
  {
    EventLoop loop;
    Counts c;
    auto l = Listener::open(loop, ::dup(*fd), false, &onPending, &c);
    ASSERT_TRUE(l.ok()) << l.message();
    int client = connectTo(bound);
    ASSERT_GE(client, 0);
    for (int i = 0; i < 100 && c.pending == 0; ++i) runFor(loop, 10);
    EXPECT_EQ(c.pending, 1);
    EXPECT_TRUE(c.accepted);
    c.accepted.reset();
    l->reset();
    ::close(client);
    EXPECT_EQ(loop.close(), 0);
  }
  ::close(*fd);
}

TEST(Listener, ASocketShutDownUnderItStopsBeingPolled) {
  auto fd = openListenSocket(*Address::parse("127.0.0.1:0"));
  ASSERT_TRUE(fd.ok()) << fd.message();
  Address bound = socketLocalAddress(*fd);
  EventLoop loop;
  Counts c;
  auto l = Listener::open(loop, ::dup(*fd), false, &onPending, &c);
  ASSERT_TRUE(l.ok()) << l.message();
  runFor(loop, 5);
  // What a reload does to a removed bind: the socket stops accepting for every dup.
  ASSERT_EQ(::shutdown(*fd, SHUT_RDWR), 0);
  EXPECT_LT(connectTo(bound), 0);  // refused at once
  // accept() on the dup now fails with EINVAL: the listener must close its handle rather
  // than let libuv retry forever, so the loop keeps turning (this returns).
  runFor(loop, 50);
  runFor(loop, 50);
  EXPECT_EQ(c.pending, 0);
  l->reset();  // the handle closed already: the deleter frees it
  EXPECT_EQ(loop.close(), 0);
  ::close(*fd);
}

}  // namespace
}  // namespace crescent::core
