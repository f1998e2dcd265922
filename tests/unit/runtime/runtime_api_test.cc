// The runtime API's transport on real UNIX sockets: framing of replies, refusals of bad
// lines, the socket file (mode, atomic replacement, unlink only if ours), `_getsocks`
// passing real listening sockets, and the blocking client and `crescent ctl`/`reload`.
// The server's loop runs on a thread while the test thread plays the client; every test
// ends with uv_loop_close() == 0 (TearDown).
#include "core/runtime/runtime_api.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/net/address.h"
#include "core/net/event_loop.h"
#include "core/net/listener.h"
#include "core/runtime/runtime_client.h"

namespace crescent::core {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The handler most tests use: "got LINE" (or "len N" for long lines), plus a few commands
// with special replies.
std::string echoReply(std::string_view line) {
  if (line == "multi") return "a\n\nb\n\n\n";
  if (line == "empty") return "";
  if (line == "big") return std::string(4 * 1024 * 1024 - 1, 'z') + "\n";
  if (line.size() > 100) return "len " + std::to_string(line.size());
  return "got " + std::string(line);
}

// A blocking-style client on a non-blocking socket: every wait is bounded by a deadline.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0;
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
  }
  ~RawClient() { closeNow(); }
  bool connected() const { return connected_; }
  void closeNow() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(std::string_view data) { return sendSome(data) == data.size(); }
  // Sends what it can of `data` within 5 s; stops early when the peer closed (EPIPE,
  // ECONNRESET). Returns the bytes sent.
  size_t sendSome(std::string_view data) {
    const size_t total = data.size();
    auto deadline = Clock::now() + 5s;
    while (!data.empty() && Clock::now() < deadline) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        break;
      } else {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 100);
      }
    }
    return total - data.size();
  }
  void shutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  // Reads until `want` bytes arrived, the server closed (EOF or reset) or 5 s passed.
  // Received fds are appended to fds_.
  std::string read(size_t want = SIZE_MAX) {
    std::string got;
    auto deadline = Clock::now() + 5s;
    char buf[65536];
    union {
      cmsghdr align;
      char b[CMSG_SPACE(sizeof(int) * 253)];
    } ctrl;
    while (got.size() < want && Clock::now() < deadline) {
      iovec iov{buf, std::min(sizeof(buf), want - got.size())};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = ctrl.b;
      msg.msg_controllen = sizeof(ctrl.b);
      ssize_t n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
      if (n > 0) {
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
          size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          for (size_t i = 0; i < k; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds_.push_back(fd);
          }
        }
        got.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno == ECONNRESET) {
        closed_ = true;
        break;
      } else {
        pollfd p{fd_, POLLIN, 0};
        ::poll(&p, 1, 100);
      }
    }
    return got;
  }
  bool closedByServer() const { return closed_; }
  std::vector<int>& fds() { return fds_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::vector<int> fds_;
};

class RuntimeApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/crescent-rtapi-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/api.sock";
  }

  void TearDown() override {
    stopLoop();
    EXPECT_EQ(loop_.close(), 0);
    std::filesystem::remove_all(dir_);
  }

  RuntimeApiOptions options() const {
    RuntimeApiOptions o;
    o.path = path_;
    return o;
  }

  // Opens a RuntimeApi on the loop: before startLoop(), or inside onLoop().
  RuntimeApi* openApi(const RuntimeApiOptions& opt, RuntimeApi::Handler h = echoReply,
                      RuntimeApi::SocketLister l = nullptr) {
    auto r = RuntimeApi::open(loop_.uv(), opt, std::move(h), std::move(l));
    EXPECT_TRUE(r.ok()) << r.message();
    if (!r.ok()) return nullptr;
    apis_.push_back(std::move(*r));
    return apis_.back().get();
  }

  // Runs the loop on a thread until every handle is closed (stopLoop()).
  void startLoop() {
    thread_ = std::thread([this] { loop_.run(); });
  }

  // Runs `fn` on the loop thread and waits for it (bounded).
  void onLoop(std::function<void()> fn) {
    auto done = std::make_shared<std::promise<void>>();
    auto f = done->get_future();
    loop_.post([fn, done] {
      fn();
      done->set_value();
    });
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  }

  size_t connectionCount(RuntimeApi* api) {
    size_t n = 0;
    onLoop([&] { n = api->connectionCount(); });
    return n;
  }

  // Polls `pred` (a value read on the loop thread) until it holds or 5 s passed.
  bool eventually(const std::function<bool()>& pred) {
    auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(2ms);
    }
    return pred();
  }

  void stopLoop() {
    auto closeAll = [this] {
      for (auto& a : apis_)
        if (a) a->close();
    };
    if (thread_.joinable()) {
      loop_.post(closeAll);
      thread_.join();
    } else {
      closeAll();
    }
    apis_.clear();
  }

  std::string dir_, path_;
  EventLoop loop_;
  std::thread thread_;
  std::vector<std::unique_ptr<RuntimeApi>> apis_;
};

TEST_F(RuntimeApiTest, RepliesInOrderEachEndedByAnEmptyLine) {
  std::mutex mu;
  std::vector<std::string> seen;
  openApi(options(), [&](std::string_view line) {
    std::lock_guard<std::mutex> lock(mu);
    seen.emplace_back(line);
    return echoReply(line);
  });
  startLoop();
  RawClient c(path_);
  ASSERT_TRUE(c.connected());
  // "\r\n" accepted, empty lines ignored, a command split over many writes.
  ASSERT_TRUE(c.send("first\r\n\nmulti\nempty\n"));
  for (char ch : std::string("last words\n")) ASSERT_TRUE(c.send(std::string(1, ch)));
  c.shutdownWrite();
  EXPECT_EQ(c.read(),
            "got first\n\n"
            "a\nb\n\n"  // empty lines inside a reply are dropped: one would end it
            "\n"        // an empty reply is just the empty line
            "got last words\n\n");
  EXPECT_TRUE(c.closedByServer());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"first", "multi", "empty", "last words"}));
}

TEST_F(RuntimeApiTest, SocketFileHasTheConfiguredModeAndGoesAwayOnClose) {
  RuntimeApiOptions opt = options();
  opt.mode = 0660;
  RuntimeApi* api = openApi(opt);
  ASSERT_NE(api, nullptr);
  RuntimeApiOptions other = options();
  other.path = dir_ + "/default.sock";
  ASSERT_NE(openApi(other), nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  ASSERT_EQ(::stat(other.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Only the two sockets: no temporary name left behind.
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 2u);
  api->close();
  api->close();  // idempotent
  EXPECT_NE(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(RuntimeApiTest, LongLineIsRefusedThenTheConnectionCloses) {
  openApi(options());
  startLoop();
  {
    // The limit itself is accepted, with or without "\r".
    RawClient c(path_);
    ASSERT_TRUE(c.send(std::string(65536, 'y') + "\n" + std::string(65536, 'y') + "\r\n"));
    c.shutdownWrite();
    EXPECT_EQ(c.read(), "len 65536\n\nlen 65536\n\n");
  }
  {
    RawClient c(path_);
    ASSERT_TRUE(c.send("ok\n" + std::string(65537, 'x') + "\nafter\n"));
    EXPECT_EQ(c.read(), "got ok\n\nerror: command line too long (max 65536 bytes)\n\n");
    EXPECT_TRUE(c.closedByServer());
  }
  {
    // No newline at all: refused as soon as the line cannot fit any more. The server
    // closes once it has read past the limit, so the rest of the send may meet a closed
    // socket: what matters is that the limit was crossed.
    RawClient c(path_);
    ASSERT_GT(c.sendSome(std::string(200000, 'x')), 65536u);
    EXPECT_EQ(c.read(), "error: command line too long (max 65536 bytes)\n\n");
    EXPECT_TRUE(c.closedByServer());
  }
}

TEST_F(RuntimeApiTest, ControlByteIsRefusedAndTheConnectionKept) {
  openApi(options());
  startLoop();
  RawClient c(path_);
  ASSERT_TRUE(c.send(std::string("bad\x01line\n") + std::string("nul\0x\n", 6) + "del\x7f\n" +
                     "cr\rinside\n" + "tab\tok\n"));
  c.shutdownWrite();
  const std::string refused = "error: malformed command line\n\n";
  EXPECT_EQ(c.read(), refused + refused + refused + refused + "got tab\tok\n\n");
  EXPECT_TRUE(c.closedByServer());
}

TEST_F(RuntimeApiTest, ClientEofClosesTheConnection) {
  RuntimeApi* api = openApi(options());
  startLoop();
  {
    RawClient c(path_);
    c.shutdownWrite();
    EXPECT_EQ(c.read(), "");
    EXPECT_TRUE(c.closedByServer());
  }
  {
    // `echo -n "show info" | socat - UNIX-CONNECT:sock`: the last line needs no newline.
    RawClient c(path_);
    ASSERT_TRUE(c.send("show info"));
    c.shutdownWrite();
    EXPECT_EQ(c.read(), "got show info\n\n");
    EXPECT_TRUE(c.closedByServer());
  }
  EXPECT_TRUE(eventually([&] { return connectionCount(api) == 0; }));
}

TEST_F(RuntimeApiTest, GetsocksIsRefusedWhenNotExposed) {
  std::atomic<bool> listed{false};
  openApi(options(), echoReply, [&] {
    listed = true;
    return std::vector<PassedSocket>{};
  });
  startLoop();
  const std::string refusal =
      "error: _getsocks: expose_fd_listeners is not enabled on this runtime socket";
  auto socks = fetchListeners(path_);
  ASSERT_FALSE(socks.ok());
  EXPECT_EQ(socks.message(), "runtime socket " + path_ + ": " + refusal);
  auto reply = runtimeCommand(path_, "_getsocks");
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(*reply, refusal + "\n");
  EXPECT_TRUE(isErrorReply(*reply));
  EXPECT_FALSE(listed);
}

// Two real listening TCP sockets go over; the received fds are those sockets.
TEST_F(RuntimeApiTest, GetsocksPassesTheListeningSockets) {
  auto a = openListenSocket(*Address::parse("127.0.0.1:0"));
  auto b = openListenSocket(*Address::parse("127.0.0.1:0"));
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<PassedSocket> mine = {
      {"tcp:" + socketLocalAddress(*a).toString(), *a},
      {"odd key: 100%\nwith a newline", *b},
      {"", *a},  // an empty key, and the same socket twice
  };
  RuntimeApiOptions opt = options();
  opt.expose_fd_listeners = true;
  openApi(opt, echoReply, [&] { return mine; });
  startLoop();

  auto got = fetchListeners(path_);
  ASSERT_TRUE(got.ok()) << got.message();
  ASSERT_EQ(got->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const PassedSocket& s = (*got)[i];
    EXPECT_EQ(s.key, mine[i].key);
    EXPECT_GE(s.fd, 0);
    EXPECT_NE(s.fd, *a);
    EXPECT_NE(s.fd, *b);
    EXPECT_EQ(::fcntl(s.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    Address local = socketLocalAddress(s.fd);
    EXPECT_EQ(local, socketLocalAddress(mine[i].fd));
    // A connection to that port is accepted on the received fd.
    int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(::connect(client, local.sockaddrPtr(), local.sockaddrLen()), 0);
    pollfd p{s.fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    int accepted = ::accept4(s.fd, nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(accepted, 0);
    if (accepted >= 0) ::close(accepted);
    ::close(client);
  }
  for (const PassedSocket& s : *got) ::close(s.fd);
  // The originals stay open and owned by the lister's owner.
  EXPECT_GE(::fcntl(*a, F_GETFD), 0);
  EXPECT_GE(::fcntl(*b, F_GETFD), 0);
  ::close(*a);
  ::close(*b);
}

TEST_F(RuntimeApiTest, GetsocksSendsManySocketsInBatches) {
  auto l = openListenSocket(*Address::parse("127.0.0.1:0"));
  ASSERT_TRUE(l.ok());
  std::vector<PassedSocket> mine;
  for (int i = 0; i < 450; ++i) mine.push_back({"k" + std::to_string(i), ::dup(*l)});
  RuntimeApiOptions opt = options();
  opt.expose_fd_listeners = true;
  openApi(opt, echoReply, [&] { return mine; });
  startLoop();
  auto got = fetchListeners(path_);
  ASSERT_TRUE(got.ok()) << got.message();
  ASSERT_EQ(got->size(), mine.size());
  Address want = socketLocalAddress(*l);
  for (size_t i = 0; i < got->size(); ++i) {
    EXPECT_EQ((*got)[i].key, "k" + std::to_string(i));
    EXPECT_EQ(socketLocalAddress((*got)[i].fd), want);
    ::close((*got)[i].fd);
  }
  for (auto& s : mine) ::close(s.fd);
  ::close(*l);
}

// `_getsocks` after a reply still queued: the fds go only once that reply is out, so
// the stream is never interleaved.
TEST_F(RuntimeApiTest, GetsocksWaitsForEarlierRepliesOnTheConnection) {
  auto l = openListenSocket(*Address::parse("127.0.0.1:0"));
  ASSERT_TRUE(l.ok());
  RuntimeApiOptions opt = options();
  opt.expose_fd_listeners = true;
  openApi(opt, echoReply, [&] { return std::vector<PassedSocket>{{"a", *l}}; });
  startLoop();
  RawClient c(path_);
  ASSERT_TRUE(c.send("big\n_getsocks\nafter\n"));
  c.shutdownWrite();
  std::string got = c.read();
  EXPECT_TRUE(c.closedByServer());
  std::string want = std::string(4 * 1024 * 1024 - 1, 'z') + "\n\n" +
                     "_getsocks v1 1\nkey a\nfds 1\n\n" + "got after\n\n";
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want);
  ASSERT_EQ(c.fds().size(), 1u);
  EXPECT_EQ(socketLocalAddress(c.fds()[0]), socketLocalAddress(*l));
  for (int fd : c.fds()) ::close(fd);
  ::close(*l);
}

TEST_F(RuntimeApiTest, SecondInstanceTakesOverThePathAndTheFirstLeavesIt) {
  RuntimeApi* first = openApi(options(), [](std::string_view) { return "one"; });
  startLoop();
  auto reply = runtimeCommand(path_, "who");
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(*reply, "one\n");
  struct stat before {};
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);

  RuntimeApi* second = nullptr;
  onLoop([&] { second = openApi(options(), [](std::string_view) { return "two"; }); });
  ASSERT_NE(second, nullptr);
  struct stat after {};
  ASSERT_EQ(::stat(path_.c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mode & 0777, 0600u);
  reply = runtimeCommand(path_, "who");
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(*reply, "two\n");

  onLoop([&] { first->close(); });
  ASSERT_EQ(::stat(path_.c_str(), &after), 0);  // not ours any more: kept
  reply = runtimeCommand(path_, "who");
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(*reply, "two\n");

  onLoop([&] { second->close(); });
  EXPECT_NE(::stat(path_.c_str(), &after), 0);
}

TEST_F(RuntimeApiTest, ClientErrorsNameTheSocket) {
  std::string missing = dir_ + "/missing.sock";
  auto reply = runtimeCommand(missing, "show info");
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.message(), "runtime socket " + missing + ": connect: No such file or directory");
  auto socks = fetchListeners(missing);
  ASSERT_FALSE(socks.ok());
  EXPECT_EQ(socks.message(), "runtime socket " + missing + ": connect: No such file or directory");
  reply = runtimeCommand(missing, "");
  EXPECT_EQ(reply.message(), "runtime socket " + missing + ": empty command");
  reply = runtimeCommand(missing, "a\nb");
  EXPECT_EQ(reply.message(), "runtime socket " + missing + ": a command cannot hold a newline");
}

TEST_F(RuntimeApiTest, OpenRefusesBadPaths) {
  RuntimeApiOptions opt = options();
  opt.path = dir_ + "/nodir/api.sock";
  auto r = RuntimeApi::open(loop_.uv(), opt, echoReply, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(), "runtime socket " + opt.path + ": bind " + opt.path + "." +
                             std::to_string(::getpid()) + ".tmp: No such file or directory");

  opt.path = dir_ + "/regular";
  { std::ofstream(opt.path) << "keep me"; }
  r = RuntimeApi::open(loop_.uv(), opt, echoReply, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(), "runtime socket " + opt.path + ": exists and is not a socket");
  EXPECT_TRUE(std::filesystem::is_regular_file(opt.path));

  opt.path = dir_ + "/" + std::string(100, 'l');
  r = RuntimeApi::open(loop_.uv(), opt, echoReply, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find(": path too long"), std::string::npos) << r.message();
}

TEST_F(RuntimeApiTest, ManyClientsAtOnce) {
  RuntimeApi* api = openApi(options());
  startLoop();
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 16; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string cmd = "c" + std::to_string(t) + "-" + std::to_string(i);
        auto reply = runtimeCommand(path_, cmd, 10000);
        if (reply.ok() && *reply == "got " + cmd + "\n") ++good;
      }
    });
  }
  for (auto& th : clients) th.join();
  EXPECT_EQ(good, 16 * 25);
  EXPECT_TRUE(eventually([&] { return connectionCount(api) == 0; }));
}

TEST_F(RuntimeApiTest, ClientLeavingMidReplyDoesNotDisturbOthers) {
  RuntimeApi* api = openApi(options());
  startLoop();
  {
    RawClient c(path_);
    ASSERT_TRUE(c.send("big\nbig\nbig\n"));
    EXPECT_EQ(c.read(1000), std::string(1000, 'z'));
  }  // closed with most of the replies unread
  auto reply = runtimeCommand(path_, "ping");
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(*reply, "got ping\n");
  EXPECT_TRUE(eventually([&] { return connectionCount(api) == 0; }));
}

TEST_F(RuntimeApiTest, IdleConnectionIsClosed) {
  RuntimeApiOptions opt = options();
  opt.idle_timeout_ms = 100;
  openApi(opt);
  startLoop();
  RawClient c(path_);
  ASSERT_TRUE(c.send("hello\n"));
  auto start = Clock::now();
  EXPECT_EQ(c.read(), "got hello\n\n");
  EXPECT_TRUE(c.closedByServer());
  EXPECT_LT(Clock::now() - start, 3s);
}

TEST_F(RuntimeApiTest, ConnectionsBeyondTheLimitAreToldSo) {
  RuntimeApiOptions opt = options();
  opt.max_connections = 2;
  RuntimeApi* api = openApi(opt);
  startLoop();
  RawClient one(path_), two(path_);
  ASSERT_TRUE(one.send("1\n") && two.send("2\n"));
  EXPECT_EQ(one.read(7), "got 1\n\n");
  EXPECT_EQ(two.read(7), "got 2\n\n");
  auto reply = runtimeCommand(path_, "3");
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(*reply, "error: too many connections to the runtime API (max 2)\n");
  one.closeNow();
  EXPECT_TRUE(eventually([&] { return connectionCount(api) == 1; }));
  reply = runtimeCommand(path_, "3");
  ASSERT_TRUE(reply.ok()) << reply.message();
  EXPECT_EQ(*reply, "got 3\n");
}

TEST_F(RuntimeApiTest, HandlerMayDestroyTheApi) {
  openApi(options(), [this](std::string_view line) {
    if (line == "quit") apis_[0].reset();  // closes, then frees this RuntimeApi
    return std::string("bye");
  });
  startLoop();
  RawClient other(path_);
  ASSERT_TRUE(other.connected());
  auto reply = runtimeCommand(path_, "quit");
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.message(), "runtime socket " + path_ + ": connection closed without a reply");
  EXPECT_EQ(other.read(), "");
  EXPECT_TRUE(other.closedByServer());
  struct stat st {};
  EXPECT_NE(::stat(path_.c_str(), &st), 0);
  thread_.join();  // nothing is left on the loop
}

// ---------------------------------------------------------------------------------------
// `crescent ctl` and `crescent reload`.

int runCtl(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ctlMain(static_cast<int>(args.size()), argv.data());
}

std::string ctlHandler(std::string_view line, int& reloads) {
  if (line == "show info") return "Name: crescent\nUptime_sec: 5\n";
  if (line == "reload")
    return ++reloads == 1 ? "Success=1\n" : "Success=0\n--\nerror: x.lua:3: boom\n";
  return "error: unknown command \"" + std::string(line) + "\"";
}

TEST_F(RuntimeApiTest, CtlAndReloadExitCodes) {
  int reloads = 0;  // touched on the loop thread only
  openApi(options(), [&](std::string_view line) { return ctlHandler(line, reloads); });
  startLoop();

  testing::internal::CaptureStdout();
  EXPECT_EQ(runCtl({"ctl", "-s", path_, "show", "info"}), 0);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "Name: crescent\nUptime_sec: 5\n");

  testing::internal::CaptureStderr();
  EXPECT_EQ(runCtl({"ctl", "-s", path_, "-t", "5000", "frobnicate", "x"}), 1);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "error: unknown command \"frobnicate x\"\n");

  testing::internal::CaptureStdout();
  EXPECT_EQ(runCtl({"reload", "-s", path_}), 0);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "Success=1\n");
  // A refused reload: the reply on stdout (for scripts) and on stderr.
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  EXPECT_EQ(runCtl({"reload", "-s", path_}), 1);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "Success=0\n--\nerror: x.lua:3: boom\n");
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "Success=0\n--\nerror: x.lua:3: boom\n");

  testing::internal::CaptureStderr();
  EXPECT_EQ(runCtl({"ctl", "show", "info"}), 2);  // no -s
  EXPECT_EQ(runCtl({"ctl", "-s"}), 2);
  EXPECT_EQ(runCtl({"ctl", "-s", path_, "-t", "soon", "x"}), 2);
  EXPECT_EQ(runCtl({"reload", "-s", path_, "now"}), 2);
  EXPECT_EQ(runCtl({"ctl", "-s", dir_ + "/missing.sock", "show", "info"}), 2);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("usage: crescent ctl -s SOCKET"), std::string::npos) << err;
  EXPECT_NE(err.find("crescent: runtime socket " + dir_ +
                     "/missing.sock: connect: No such file or directory\n"),
            std::string::npos)
      << err;
}

TEST_F(RuntimeApiTest, CtlReadsCommandsFromStdin) {
  int reloads = 0;
  openApi(options(), [&](std::string_view line) { return ctlHandler(line, reloads); });
  startLoop();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::string input = "show info\n\nbogus\r\nshow info";
  ASSERT_EQ(::write(p[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
  ::close(p[1]);
  int saved = ::dup(0);
  ::dup2(p[0], 0);
  ::close(p[0]);
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  int rc = runCtl({"ctl", "-s", path_});
  std::string out = testing::internal::GetCapturedStdout();
  std::string err = testing::internal::GetCapturedStderr();
  ::dup2(saved, 0);
  ::close(saved);
  std::clearerr(stdin);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(out, "Name: crescent\nUptime_sec: 5\nName: crescent\nUptime_sec: 5\n");
  EXPECT_EQ(err, "error: unknown command \"bogus\"\n");
}

}  // namespace
}  // namespace crescent::core
