// Stream writes that fail (core/net/stream.h): the owner hears of every failure, on a later
// loop turn, even when it is not reading (it stopped for back-pressure and waits for
// onStreamDrained, which never comes for bytes that were dropped).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "core/net/stream.h"

namespace crescent::core {
namespace {

struct Recorder : StreamHandler {
  std::vector<int> errors;
  int drained = 0;
  bool close_on_error = false;
  StreamPtr* owned = nullptr;
  void onStreamData(Stream&, Buffer) override {}
  void onStreamEof(Stream&) override {}
  void onStreamError(Stream&, int uv_error) override {
    errors.push_back(uv_error);
    if (close_on_error && owned != nullptr) owned->reset();
  }
  void onStreamDrained(Stream&) override { ++drained; }
};

// One loop iteration that does not block (a pending idle callback runs).
void turn(EventLoop& loop) {
  uv_run(loop.uv(), UV_RUN_NOWAIT);
}

// A stream whose socket libuv refuses to write to at once: it has none (a connect whose
// socket() failed leaves a stream like this). uv_write() returns UV_EBADF synchronously.
TEST(StreamWrite, ASynchronousFailureReachesAnOwnerThatIsNotReading) {
  EventLoop loop;
  Recorder r;
  StreamPtr s = Stream::create(loop, Stream::Kind::kTcp);
  s->setHandler(&r);
  ASSERT_FALSE(s->reading());
  s->write(std::string("GET / HTTP/1.1\r\n\r\n"));
  EXPECT_TRUE(r.errors.empty()) << "reported from inside write()";
  turn(loop);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], UV_EBADF);
  // Every later failure is reported too, one report each time.
  s->write(std::string("more"));
  s->write(std::string("and more"));
  turn(loop);
  EXPECT_EQ(r.errors.size(), 2u);
  turn(loop);
  EXPECT_EQ(r.errors.size(), 2u);
  s.reset();
  EXPECT_EQ(loop.close(), 0);
}

TEST(StreamWrite, TheHeadAndBodyWriteReportsItsFailureToo) {
  EventLoop loop;
  Recorder r;
  StreamPtr s = Stream::create(loop, Stream::Kind::kPipe);
  s->setHandler(&r);
  Buffer body = BufferPool::local().take();
  body.append("body");
  s->write(std::string("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"), std::move(body));
  EXPECT_TRUE(r.errors.empty());
  turn(loop);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], UV_EBADF);
  s.reset();
  EXPECT_EQ(loop.close(), 0);
}

TEST(StreamWrite, ClosingBeforeTheReportCancelsIt) {
  EventLoop loop;
  Recorder r;
  StreamPtr s = Stream::create(loop, Stream::Kind::kTcp);
  s->setHandler(&r);
  s->write(std::string("x"));
  s.reset();  // closes: no callback after this, and no handle left behind
  turn(loop);
  turn(loop);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(loop.close(), 0);
}

TEST(StreamWrite, AnOwnerMayCloseTheStreamFromTheReport) {
  EventLoop loop;
  Recorder r;
  StreamPtr s = Stream::create(loop, Stream::Kind::kTcp);
  r.close_on_error = true;
  r.owned = &s;
  s->setHandler(&r);
  s->write(std::string("x"));
  turn(loop);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_FALSE(s);
  EXPECT_EQ(loop.close(), 0);
}

// Borrowed bytes (core/base/bytes.h) leave from where they are; the stream holds their
// keeper until the kernel has the last byte, and lets it go when the write completes or
// is cancelled by close(): not before, and not never.
TEST(StreamWrite, BorrowedBytesKeepTheirKeeperUntilWritten) {
  EventLoop loop;
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Recorder r;
  StreamPtr s = Stream::create(loop, Stream::Kind::kPipe);
  ASSERT_EQ(s->open(fds[0]), 0);
  s->setHandler(&r);
  // More than a socket pair's buffers take at once: most of it waits in the stream.
  const std::string data(8 << 20, 'b');
  auto keep = std::make_shared<int>(0);
  std::weak_ptr<int> watch = keep;
  s->write(Bytes::borrow(data.data(), data.size(), std::move(keep)));
  ASSERT_FALSE(watch.expired()) << "released while bytes were still queued";
  EXPECT_GT(s->pendingBytes(), 0u);

  std::string got;
  char buf[65536];
  for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
    turn(loop);
    ssize_t n = ::recv(fds[1], buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (s->pendingBytes() > 0) {
      ASSERT_FALSE(watch.expired()) << "released while bytes wait";
    }
  }
  turn(loop);
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
  EXPECT_TRUE(watch.expired()) << "kept after the last byte was written";
  EXPECT_TRUE(r.errors.empty());

  // Queued and then cancelled by close(): released with the write.
  auto keep2 = std::make_shared<int>(0);
  std::weak_ptr<int> watch2 = keep2;
  s->write(Bytes::borrow(data.data(), data.size(), std::move(keep2)));
  ASSERT_FALSE(watch2.expired());
  s.reset();
  turn(loop);
  EXPECT_TRUE(watch2.expired());
  ::close(fds[1]);
  EXPECT_EQ(loop.close(), 0);
}

// Owned bytes go as a string; append() copies a borrowed range and lets its keeper go.
TEST(Bytes, AppendToBorrowedBytesCopiesAndReleases) {
  auto keep = std::make_shared<int>(0);
  std::weak_ptr<int> watch = keep;
  const std::string text = "borrowed";
  Bytes b = Bytes::borrow(text.data(), text.size(), std::move(keep));
  EXPECT_TRUE(b.borrowed());
  b.append(" then owned");
  EXPECT_FALSE(b.borrowed());
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(b.view(), "borrowed then owned");
  // keepAlso lets the range's keeper go before the owner it adds.
  std::vector<int> order;
  struct Note {
    std::vector<int>* order;
    int id;
    ~Note() { order->push_back(id); }
  };
  Bytes c = Bytes::borrow(text.data(), text.size(), std::make_shared<Note>(Note{&order, 1}));
  c.keepAlso(std::make_shared<Note>(Note{&order, 2}));
  order.clear();  // the temporaries above noted themselves
  c.clear();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace crescent::core
