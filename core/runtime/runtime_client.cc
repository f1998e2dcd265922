#include "core/runtime/runtime_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace crescent::core {
namespace {

using Clock = std::chrono::steady_clock;

// A reply larger than this is refused rather than buffered (`show stat` of thousands of
// servers is a few MiB).
constexpr size_t kMaxReply = 64 * 1024 * 1024;
// Room for the largest SCM_RIGHTS message the kernel sends (SCM_MAX_FD).
constexpr size_t kMaxFdsPerMessage = 253;

class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;

 private:
  int fd_;
};

void closeAll(std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
  fds.clear();
}

// A deadline in ms; none when timeout_ms <= 0.
class Deadline {
 public:
  explicit Deadline(int timeout_ms)
      : bounded_(timeout_ms > 0), at_(Clock::now() + std::chrono::milliseconds(timeout_ms)) {}
  /// Milliseconds left for poll(): -1 when unbounded, 0 when expired.
  int pollMs() const {
    if (!bounded_) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - Clock::now());
    return left.count() <= 0 ? 0 : static_cast<int>(left.count());
  }

 private:
  bool bounded_;
  Clock::time_point at_;
};

std::string where(const std::string& path) {
  return "runtime socket " + path + ": ";
}

// Connects a blocking socket; a full backlog makes connect() wait, bounded by SO_SNDTIMEO.
Result<int> connectTo(const std::string& path, int timeout_ms) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sun.sun_path))
    return Status::error(where(path) + "invalid path (empty or longer than " +
                         std::to_string(sizeof(sun.sun_path) - 1) + " bytes)");
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::error(where(path) + "socket: " + std::strerror(errno));
  if (timeout_ms > 0) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  while (::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
    if (errno == EINTR) continue;
    int err = errno;
    ::close(fd);
    if (err == EAGAIN || err == EINPROGRESS)
      return Status::error(where(path) + "connect: timed out after " + std::to_string(timeout_ms) +
                           " ms");
    return Status::error(where(path) + "connect: " + std::strerror(err));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// Writes all of `data`; 0, ETIMEDOUT or an errno value.
int sendAll(int fd, std::string_view data, const Deadline& deadline) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return errno;
    int ms = deadline.pollMs();
    if (ms == 0) return ETIMEDOUT;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, ms) < 0 && errno != EINTR) return errno;
  }
  return 0;
}

// Appends the fds of every SCM_RIGHTS message in `msg` to `fds`.
void takeFds(msghdr& msg, std::vector<int>& fds) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.push_back(fd);
    }
  }
}

// Reads until the server closes. Received fds (close-on-exec) are appended to `fds`, which
// the caller closes, also on error. 0, ETIMEDOUT, EMSGSIZE, or an errno value.
int readAll(int fd, const Deadline& deadline, std::string& data, std::vector<int>& fds,
            bool& truncated_fds) {
  union {
    cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  } ctrl;
  char buf[16384];
  for (;;) {
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.buf;
    msg.msg_controllen = sizeof(ctrl.buf);
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n >= 0) {
      takeFds(msg, fds);
      if (msg.msg_flags & MSG_CTRUNC) truncated_fds = true;
    }
    if (n == 0) return 0;
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
      if (data.size() > kMaxReply) return EMSGSIZE;
      continue;
    }
    if (errno == EINTR) continue;
    // The server closed with our bytes unread (e.g. after "command line too long"): the
    // kernel reports a reset once everything it sent has been read.
    if (errno == ECONNRESET) return 0;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno;
    int ms = deadline.pollMs();
    if (ms == 0) return ETIMEDOUT;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) < 0 && errno != EINTR) return errno;
  }
}

// One command on a new connection: sends it, half-closes, reads the reply until the
// server closes. Returns the reply without its terminating empty line. Received fds are
// appended to `fds` (the caller owns them, also on error).
Result<std::string> exchange(const std::string& path, const std::string& command, int timeout_ms,
                             std::vector<int>& fds) {
  if (command.empty()) return Status::error(where(path) + "empty command");
  if (command.find('\n') != std::string::npos)
    return Status::error(where(path) + "a command cannot hold a newline");
  Deadline deadline(timeout_ms);
  auto fd = connectTo(path, timeout_ms);
  if (!fd.ok()) return fd.status();
  FdGuard guard(*fd);
  std::string line = command + "\n";
  int err = sendAll(*fd, line, deadline);
  if (err == 0 && ::shutdown(*fd, SHUT_WR) != 0) err = errno;
  std::string data;
  bool truncated_fds = false;
  // A server that refuses (too many connections) may close before reading our command.
  if (err == 0 || err == EPIPE || err == ECONNRESET)
    err = readAll(*fd, deadline, data, fds, truncated_fds);
  if (err == ETIMEDOUT)
    return Status::error(where(path) + "no complete reply within " + std::to_string(timeout_ms) +
                         " ms");
  if (err == EMSGSIZE)
    return Status::error(where(path) + "reply larger than " + std::to_string(kMaxReply) + " bytes");
  if (err != 0) return Status::error(where(path) + std::strerror(err));
  if (truncated_fds)
    return Status::error(where(path) + "file descriptors were lost (control data truncated)");
  if (data.empty()) return Status::error(where(path) + "connection closed without a reply");
  if (data != "\n" && !data.ends_with("\n\n"))
    return Status::error(where(path) + "connection closed before the end of the reply");
  data.pop_back();
  return data;
}

std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

bool parseCount(std::string_view text, size_t& n) {
  auto r = std::from_chars(text.data(), text.data() + text.size(), n);
  return r.ec == std::errc() && r.ptr == text.data() + text.size() && !text.empty();
}

// Parses a `_getsocks` reply (format in runtime_api.h) received with `fds`.
Status parseSockets(std::string_view reply, const std::vector<int>& fds,
                    std::vector<PassedSocket>& out) {
  std::vector<std::string_view> lines = splitLines(reply);
  size_t n = 0;
  if (lines.empty() || !lines[0].starts_with("_getsocks v1 ") ||
      !parseCount(lines[0].substr(13), n))
    return Status::error("unexpected _getsocks reply \"" +
                         escapeSocketKey(lines.empty() ? "" : lines[0]) + "\"");
  if (lines.size() < 1 + n) return Status::error("_getsocks reply: missing keys");
  for (size_t i = 0; i < n; ++i) {
    PassedSocket s;
    if (!lines[1 + i].starts_with("key ") || !unescapeSocketKey(lines[1 + i].substr(4), s.key))
      return Status::error("_getsocks reply: malformed key line " + std::to_string(i + 1));
    out.push_back(std::move(s));
  }
  size_t announced = 0;
  for (size_t i = 1 + n; i < lines.size(); ++i) {
    size_t k = 0;
    if (!lines[i].starts_with("fds ") || !parseCount(lines[i].substr(4), k))
      return Status::error("_getsocks reply: unexpected line \"" + escapeSocketKey(lines[i]) +
                           "\"");
    announced += k;
  }
  if (announced != n || fds.size() != n)
    return Status::error("_getsocks reply: " + std::to_string(n) + " sockets announced, " +
                         std::to_string(announced) + " in fds lines, " +
                         std::to_string(fds.size()) + " received");
  for (size_t i = 0; i < n; ++i) out[i].fd = fds[i];
  return Status();
}

const char kCtlUsage[] =
    "usage: crescent ctl -s SOCKET [-t MS] [COMMAND [ARGS...]]\n"
    "       crescent reload -s SOCKET [-t MS]\n"
    "  -s SOCKET   the runtime API's UNIX socket\n"
    "  -t MS       give up when no complete reply came within MS milliseconds\n"
    "              (default 30000; 0: wait as long as it takes)\n"
    "ctl sends COMMAND (its words joined by spaces) and prints the reply; without COMMAND\n"
    "it sends each line of stdin in turn. reload hot-reloads the configuration and prints\n"
    "Success=1 and the generation, or Success=0 and the error (on stdout and stderr).\n"
    "Exit status: 0 success, 1 the reply is an error, 2 usage error or no reply.\n";

int usageError(const std::string& msg) {
  std::fprintf(stderr, "crescent: %s\n%s", msg.c_str(), kCtlUsage);
  return 2;
}

void print(std::FILE* to, const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), to);
  std::fflush(to);
}

// Sends one command and prints its reply. Returns the exit code for it.
int ctlOne(const std::string& sock, const std::string& command, int timeout_ms) {
  auto reply = runtimeCommand(sock, command, timeout_ms);
  if (!reply.ok()) {
    std::fprintf(stderr, "crescent: %s\n", reply.message().c_str());
    return 2;
  }
  bool error = isErrorReply(*reply);
  print(error ? stderr : stdout, *reply);
  return error ? 1 : 0;
}

// `ctl` without a command: each non-empty stdin line in turn. Stops at the first command
// that got no reply (the server is gone).
int ctlStdin(const std::string& sock, int timeout_ms) {
  int rc = 0;
  char* buf = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = ::getline(&buf, &cap, stdin)) >= 0) {
    std::string line(buf, static_cast<size_t>(n));
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.empty()) continue;
    int one = ctlOne(sock, line, timeout_ms);
    if (one == 2) {
      rc = 2;
      break;
    }
    if (one == 1) rc = 1;
  }
  std::free(buf);
  return rc;
}

int reloadMain(const std::string& sock, int timeout_ms) {
  auto reply = runtimeCommand(sock, "reload", timeout_ms);
  if (!reply.ok()) {
    std::fprintf(stderr, "crescent: %s\n", reply.message().c_str());
    return 2;
  }
  std::string_view first = std::string_view(*reply).substr(0, reply->find('\n'));
  bool ok = first == "Success=1";
  // A refusal goes to stdout too: a script reading stdout sees "Success=0" and the
  // file:line: message; a person at a terminal sees it on stderr.
  print(stdout, *reply);
  if (!ok) print(stderr, *reply);
  return ok ? 0 : 1;
}

}  // namespace

Result<std::string> runtimeCommand(const std::string& socket_path, const std::string& command,
                                   int timeout_ms) {
  std::vector<int> fds;
  auto reply = exchange(socket_path, command, timeout_ms, fds);
  closeAll(fds);
  return reply;
}

Result<std::vector<PassedSocket>> fetchListeners(const std::string& socket_path, int timeout_ms) {
  std::vector<int> fds;
  auto reply = exchange(socket_path, "_getsocks", timeout_ms, fds);
  if (!reply.ok()) {
    closeAll(fds);
    return reply.status();
  }
  if (isErrorReply(*reply)) {
    closeAll(fds);
    std::string first = reply->substr(0, reply->find('\n'));
    return Status::error(where(socket_path) + first);
  }
  std::vector<PassedSocket> sockets;
  if (Status st = parseSockets(*reply, fds, sockets); !st.ok()) {
    closeAll(fds);
    return Status::error(where(socket_path) + st.message());
  }
  return sockets;
}

int ctlMain(int argc, char** argv) {
  if (argc < 1) return usageError("no subcommand");
  std::string sub = argv[0];
  if (sub != "ctl" && sub != "reload") return usageError("unknown subcommand \"" + sub + "\"");
  std::string sock;
  int timeout_ms = 30000;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kCtlUsage, stdout);
      return 0;
    } else if (a == "-s" || a == "-t") {
      if (i + 1 >= argc) return usageError(a + " needs a value");
      std::string v = argv[++i];
      if (a == "-s") {
        sock = v;
        continue;
      }
      auto r = std::from_chars(v.data(), v.data() + v.size(), timeout_ms);
      if (r.ec != std::errc() || r.ptr != v.data() + v.size() || timeout_ms < 0)
        return usageError("-t needs a number of milliseconds, not \"" + v + "\"");
    } else if (a == "--") {
      ++i;
      break;
    } else if (a.size() > 1 && a[0] == '-') {
      return usageError("unknown option \"" + a + "\"");
    } else {
      break;
    }
  }
  if (sock.empty()) return usageError("no runtime socket given (-s SOCKET)");
  if (sub == "reload") {
    if (i < argc) return usageError("reload takes no command");
    return reloadMain(sock, timeout_ms);
  }
  if (i == argc) return ctlStdin(sock, timeout_ms);
  std::string command;
  for (; i < argc; ++i) {
    if (!command.empty()) command += ' ';
    command += argv[i];
  }
  return ctlOne(sock, command, timeout_ms);
}

}  // namespace crescent::core
