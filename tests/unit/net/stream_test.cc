// Stream writes that fail (core/net/stream.h): the owner hears of every failure, on a later
// loop turn, even when it is not reading (it stopped for back-pressure and waits for
// onStreamDrained, which never comes for bytes that were dropped).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

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

}  // namespace
}  // namespace crescent::core
