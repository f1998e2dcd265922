// HealthChecker against small TCP servers on 127.0.0.1 (plain threads with blocking
// sockets): refused connections, HTTP statuses, body and Lua-style expectations, rise and
// fall counting, and the orderly close (FIN, not RST) of a check connection.

#include "core/backend/health_check.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace crescent::core {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(20);  // generous: the suite runs under ASan

// Polls `pred` until it holds or the deadline passes; returns its last value.
bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit = kDeadline) {
  auto end = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() >= end) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A listening socket on 127.0.0.1:0 served by one thread, one connection at a time (a
// server's checks never overlap). `handler(fd)` runs per connection; the fd is closed
// after it returns.
class TestServer {
 public:
  using Handler = std::function<void(int fd)>;
  explicit TestServer(Handler handler) : handler_(std::move(handler)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ++accepted_;
      handler_(c);
      ::close(c);
    }
  }

  Handler handler_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// Reads until the end of a request head (or EOF/timeout); returns what was read.
std::string readHead(int fd) {
  std::string in;
  char buf[2048];
  while (in.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  return in;
}

void sendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

std::string httpResponse(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Service Unavailable") +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A port on which nothing listens (bound, then closed: connects are refused).
uint16_t refusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

HealthCheckConfig fastCheck() {
  HealthCheckConfig c;
  c.enabled = true;
  c.inter = 20;
  c.timeout = 2000;
  c.rise = 2;
  c.fall = 3;
  return c;
}

HealthCheckConfig httpCheck(const std::string& uri = "/health") {
  HealthCheckConfig c = fastCheck();
  c.kind = HealthCheckConfig::Kind::kHttp;
  c.uri = uri;
  return c;
}

// A backend "b" of servers s1, s2, ... on the given ports, all checked with `check`.
// Not movable: the Backend keeps a reference to its config.
class TestBackend {
 public:
  TestBackend(const std::vector<uint16_t>& ports, const HealthCheckConfig& check) {
    cfg_.name = "b";
    for (size_t i = 0; i < ports.size(); ++i) {
      ServerConfig s;
      s.name = "s" + std::to_string(i + 1);
      s.text = "127.0.0.1:" + std::to_string(ports[i]);
      auto a = Address::parse(s.text);
      EXPECT_TRUE(a.ok());
      s.address = *a;
      s.id = static_cast<int>(i + 1);
      s.check = check;
      cfg_.servers.push_back(s);
    }
    backend_ = std::make_unique<Backend>(cfg_, 0);
  }
  TestBackend(const TestBackend&) = delete;
  Server& server(size_t i) { return *backend_->servers()[i]; }
  std::vector<Backend*> list() { return {backend_.get()}; }

 private:
  BackendConfig cfg_;
  std::unique_ptr<Backend> backend_;
};

// Captures the diagnostic log (stderr) of a scope.
class StderrCapture {
 public:
  StderrCapture() { testing::internal::CaptureStderr(); }
  ~StderrCapture() {
    if (!done_) testing::internal::GetCapturedStderr();
  }
  std::string take() {
    done_ = true;
    return testing::internal::GetCapturedStderr();
  }

 private:
  bool done_ = false;
};

TEST(HealthCheckTest, RefusedServerGoesDownAfterFallFailures) {
  TestBackend b({refusedPort()}, fastCheck());
  Server& s = b.server(0);
  StderrCapture log;
  {
    HealthChecker hc(b.list(), nullptr);
    hc.start();
    EXPECT_TRUE(s.up());
    ASSERT_TRUE(waitFor([&] { return !s.up(); }));
    // Failures are counted while UP: exactly `fall` of them took it down.
    EXPECT_EQ(s.checkFailures(), 3u);
    hc.stop();
  }
  std::string out = log.take();
  EXPECT_NE(out.find("server b/s1 is DOWN, reason: Layer4 connection problem, info: "
                     "\"Connection refused\", check duration: "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("status: 2/3 UP"), std::string::npos) << out;
  EXPECT_NE(out.find("status: 1/3 UP"), std::string::npos) << out;
  EXPECT_EQ(out.find("handles still open"), std::string::npos) << out;
}

// An HTTP server whose /health status can be switched; records, per request, the status
// it answered and whether the checked server was UP when the request arrived (so the
// effect of every earlier check is visible).
struct SwitchableHttp {
  std::atomic<int> status{200};
  std::string body = "ok";
  Server* watched = nullptr;
  std::mutex mu;
  std::vector<std::pair<int, bool>> seen;  // (status answered, up at arrival)
  std::vector<std::string> requests;
  TestServer server{[this](int fd) {
    std::string req = readHead(fd);
    int st = status.load();
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.emplace_back(st, watched != nullptr && watched->up());
      requests.push_back(req);
    }
    sendAll(fd, httpResponse(st, body));
  }};
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return seen.size();
  }
};

TEST(HealthCheckTest, HttpWrongStatusGoesDownThenRiseSuccessesBringItUp) {
  SwitchableHttp web;
  web.status = 503;
  HealthCheckConfig c = httpCheck();
  c.rise = 3;
  c.fall = 2;
  TestBackend b({web.server.port()}, c);
  Server& s = b.server(0);
  web.watched = &s;
  StderrCapture log;
  {
    HealthChecker hc(b.list(), nullptr);
    hc.start();
    ASSERT_TRUE(waitFor([&] { return !s.up(); }));
    web.status = 200;
    ASSERT_TRUE(waitFor([&] { return s.up(); }));
    size_t n = web.count();
    ASSERT_TRUE(waitFor([&] { return web.count() > n; }));  // one check after it came up
    hc.stop();
  }
  std::string out = log.take();
  EXPECT_NE(out.find("server b/s1 is DOWN, reason: Layer7 wrong status, code: 503, info: "
                     "\"Service Unavailable\""),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("server b/s1 is UP, reason: Layer7 check passed, code: 200"),
            std::string::npos)
      << out;

  // The 200s after the last 503: the first `rise` found it DOWN, the next found it UP.
  std::lock_guard<std::mutex> lock(web.mu);
  size_t first_ok = web.seen.size();
  while (first_ok > 0 && web.seen[first_ok - 1].first == 200) --first_ok;
  ASSERT_GE(web.seen.size() - first_ok, 4u);
  for (size_t i = 0; i < 3; ++i) EXPECT_FALSE(web.seen[first_ok + i].second) << i;
  EXPECT_TRUE(web.seen[first_ok + 3].second);
  // What a check sends.
  EXPECT_EQ(web.requests[0],
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(web.server.port()) +
                "\r\nUser-Agent: crescent-health-check\r\nConnection: close\r\n\r\n");
}

TEST(HealthCheckTest, ExpectBodyMismatchGoesDownWhileMatchStaysUp) {
  SwitchableHttp good, bad;
  good.body = "status: ready";
  bad.body = "status: starting";
  HealthCheckConfig c = httpCheck();
  c.expect_body = "ready";
  TestBackend b({good.server.port(), bad.server.port()}, c);
  StderrCapture log;
  {
    HealthChecker hc(b.list(), nullptr);
    hc.start();
    ASSERT_TRUE(waitFor([&] { return !b.server(1).up(); }));
    ASSERT_TRUE(waitFor([&] { return good.count() >= 5; }));
    EXPECT_TRUE(b.server(0).up());
    EXPECT_EQ(b.server(0).checkFailures(), 0u);
    hc.stop();
  }
  std::string out = log.take();
  EXPECT_NE(out.find("server b/s2 is DOWN, reason: Layer7 response content error"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("b/s1"), std::string::npos) << out;
}

TEST(HealthCheckTest, ExpectStatusRangesReplaceTheDefault) {
  SwitchableHttp web;
  web.status = 503;
  HealthCheckConfig c = httpCheck();
  c.expect_status = {{503, 503}};
  TestBackend b({web.server.port()}, c);
  HealthChecker hc(b.list(), nullptr);
  hc.start();
  ASSERT_TRUE(waitFor([&] { return web.count() >= 5; }));
  EXPECT_TRUE(b.server(0).up());
  web.status = 200;  // 200 is not in the configured ranges
  ASSERT_TRUE(waitFor([&] { return !b.server(0).up(); }));
}

// A CheckScript standing in for a Lua `expect`: up when the body says "ok".
class FakeScript : public CheckScript {
 public:
  bool runCheckExpect(int hook_id, const CheckResponse& res, const Server&,
                      std::string& reason) override {
    ++calls;
    last_hook = hook_id;
    last_status = res.status;
    if (res.body.find("ok") != std::string_view::npos) return true;
    reason = "body says \"" + std::string(res.body) + "\"\nline two";
    return false;
  }
  std::atomic<int> calls{0};
  std::atomic<int> last_hook{0};
  std::atomic<int> last_status{0};
};

TEST(HealthCheckTest, ScriptExpectDecidesFromTheBody) {
  SwitchableHttp web;
  web.body = "degraded";
  HealthCheckConfig c = httpCheck();
  c.expect_hook = 7;
  TestBackend b({web.server.port()}, c);
  auto script = std::make_unique<FakeScript>();
  FakeScript* fake = script.get();
  StderrCapture log;
  {
    HealthChecker hc(b.list(), std::move(script));
    hc.start();
    ASSERT_TRUE(waitFor([&] { return !b.server(0).up(); }));
    EXPECT_EQ(fake->last_hook.load(), 7);
    EXPECT_EQ(fake->last_status.load(), 200);
    hc.stop();
  }
  std::string out = log.take();
  // The script's reason, on one line.
  EXPECT_NE(out.find("Layer7 response content error, info: \"body says \"degraded\" line two\""),
            std::string::npos)
      << out;
}

TEST(HealthCheckTest, TcpSendExpectBody) {
  // Answers `reply` to PING; keeps the connection open unless `close_after`.
  auto pong = [](const char* reply, bool close_after) {
    return [reply, close_after](int fd) {
      char buf[64];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n > 0 && std::string(buf, static_cast<size_t>(n)) == "PING\r\n") sendAll(fd, reply);
      if (!close_after) ::recv(fd, buf, sizeof(buf), 0);
    };
  };
  TestServer good(pong("+PONG\r\n", false)), bad(pong("-ERR loading\r\n", true));
  HealthCheckConfig c = fastCheck();
  c.send = "PING\r\n";
  c.expect_body = "PONG";
  TestBackend b({good.port(), bad.port()}, c);
  StderrCapture log;
  {
    HealthChecker hc(b.list(), nullptr);
    hc.start();
    ASSERT_TRUE(waitFor([&] { return !b.server(1).up(); }));
    ASSERT_TRUE(waitFor([&] { return good.accepted() >= 5; }));
    EXPECT_TRUE(b.server(0).up());
    EXPECT_EQ(b.server(0).checkFailures(), 0u);
    hc.stop();
  }
  std::string out = log.take();
  EXPECT_NE(out.find("server b/s2 is DOWN, reason: Layer7 response content error, info: "
                     "\"expected reply not found\""),
            std::string::npos)
      << out;
}

TEST(HealthCheckTest, TcpConnectOnlyAndSendOnly) {
  std::atomic<int> pings{0};
  TestServer quiet([](int) {});
  TestServer sink([&](int fd) {
    char buf[64];
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0 && std::string(buf, static_cast<size_t>(n)) == "PING\r\n") ++pings;
  });
  HealthCheckConfig connect_only = fastCheck();
  HealthCheckConfig send_only = fastCheck();
  send_only.send = "PING\r\n";
  TestBackend a({quiet.port()}, connect_only), b({sink.port()}, send_only);
  HealthChecker hc({a.list()[0], b.list()[0]}, nullptr);
  hc.start();
  ASSERT_TRUE(waitFor([&] { return quiet.accepted() >= 3 && pings.load() >= 3; }));
  EXPECT_TRUE(a.server(0).up());
  EXPECT_TRUE(b.server(0).up());
  EXPECT_EQ(a.server(0).checkFailures() + b.server(0).checkFailures(), 0u);
}

TEST(HealthCheckTest, TimeoutWhenTheServerNeverAnswers) {
  std::atomic<bool> release{false};
  TestServer mute([&](int fd) {
    readHead(fd);
    waitFor([&] { return release.load(); });  // until the test ends; never answers
  });
  HealthCheckConfig c = httpCheck();
  c.timeout = 50;
  c.fall = 1;
  TestBackend b({mute.port()}, c);
  StderrCapture log;
  {
    HealthChecker hc(b.list(), nullptr);
    hc.start();
    ASSERT_TRUE(waitFor([&] { return !b.server(0).up(); }));
    hc.stop();
  }
  release = true;
  std::string out = log.take();
  EXPECT_NE(out.find("is DOWN, reason: Layer7 timeout, check duration: "), std::string::npos)
      << out;
}

TEST(HealthCheckTest, StopClosesAChecksConnectionInProgress) {
  std::atomic<bool> release{false};
  TestServer mute([&](int fd) {
    readHead(fd);
    waitFor([&] { return release.load(); });
  });
  HealthCheckConfig c = httpCheck();
  c.timeout = 60000;
  TestBackend b({mute.port()}, c);
  StderrCapture log;
  {
    HealthChecker hc(b.list(), nullptr);
    hc.start();
    ASSERT_TRUE(waitFor([&] { return mute.accepted() == 1; }));
    auto t0 = Clock::now();
    hc.stop();
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
    hc.stop();  // idempotent
  }
  release = true;
  std::string out = log.take();
  EXPECT_EQ(out.find("handles still open"), std::string::npos) << out;
  EXPECT_TRUE(b.server(0).up());
}

TEST(HealthCheckTest, MaintServersAreNotChecked) {
  SwitchableHttp parked, running;
  TestBackend b({parked.server.port(), running.server.port()}, httpCheck());
  b.server(0).setAdmin(AdminState::kMaint, "test");
  HealthChecker hc(b.list(), nullptr);
  hc.start();
  // Both run on the same interval: while s2 was checked five times, s1 was due as often.
  ASSERT_TRUE(waitFor([&] { return running.count() >= 5; }));
  EXPECT_EQ(parked.count(), 0u);
  b.server(0).setAdmin(AdminState::kReady, "test");
  ASSERT_TRUE(waitFor([&] { return parked.count() >= 1; }));
}

// The check reads the head (and stops), the server has sent more than that and then its
// FIN: the check's close must still be an orderly one. Unread input left in a TCP socket
// at close makes the kernel send RST, which the server would see as ECONNRESET.
TEST(HealthCheckTest, ClosesWithFinEvenWithUnreadInput) {
  std::mutex mu;
  std::vector<int> outcomes;  // recv() result after the server's FIN: 0 or -errno
  TestServer web([&](int fd) {
    int big = 1 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    readHead(fd);
    // Far more than one read of the check: most of it stays unread in its socket.
    std::string extra(48 * 1024, 'x');
    sendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra);
    ::shutdown(fd, SHUT_WR);
    char buf[256];
    ssize_t n;
    do n = ::recv(fd, buf, sizeof(buf), 0);
    while (n > 0);
    std::lock_guard<std::mutex> lock(mu);
    outcomes.push_back(n == 0 ? 0 : -errno);
  });
  TestBackend b({web.port()}, httpCheck());
  HealthChecker hc(b.list(), nullptr);
  hc.start();
  ASSERT_TRUE(waitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return outcomes.size() >= 5;
  }));
  hc.stop();
  std::lock_guard<std::mutex> lock(mu);
  for (size_t i = 0; i < outcomes.size(); ++i)
    EXPECT_EQ(outcomes[i], 0) << "check " << i << ": " << std::strerror(-outcomes[i]);
  EXPECT_TRUE(b.server(0).up());
}

TEST(HealthCheckTest, WantedOnlyWithACheckedServer) {
  HealthCheckConfig off = fastCheck();
  off.enabled = false;
  TestBackend none({refusedPort()}, off);
  EXPECT_FALSE(HealthChecker::wanted(none.list()));
  TestBackend some({refusedPort()}, fastCheck());
  EXPECT_TRUE(HealthChecker::wanted(some.list()));
  HealthChecker never_started(none.list(), nullptr);
  never_started.stop();
}

}  // namespace
}  // namespace crescent::core
