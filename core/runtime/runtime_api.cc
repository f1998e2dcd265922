#include "core/runtime/runtime_api.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/base/log.h"

namespace crescent::core {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 16 * 1024;
// Output queued for one client above which its next commands wait (a client pipelining
// `show stat` without reading must not grow our memory), and below which they resume.
constexpr size_t kHighWater = 256 * 1024;
constexpr size_t kLowWater = 64 * 1024;
// Bound on the whole `_getsocks` transfer, which blocks the loop (the client is a process
// waiting for exactly this reply; one that does not read is dropped).
constexpr int kFdPassTimeoutMs = 5000;
constexpr int kBacklog = 64;
constexpr std::string_view kGetsocks = "_getsocks";

Status pathError(const std::string& path, const std::string& what, int err) {
  return Status::error("runtime socket " + path + ": " + what + ": " + std::strerror(err));
}

// The wire form of a reply (see the protocol in the header): each non-empty line of `text`
// followed by "\n", then the empty line that ends the reply.
std::string frameReply(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line != "\r") {
      out.append(line);
      out.push_back('\n');
    }
    pos = end + 1;
  }
  out.push_back('\n');
  return out;
}

bool isControlByte(unsigned char c) {
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

bool hasControlByte(std::string_view line) {
  return std::any_of(line.begin(), line.end(),
                     [](char c) { return isControlByte(static_cast<unsigned char>(c)); });
}

// The first word of a command line (words are separated by spaces or tabs).
std::string_view firstWord(std::string_view line, std::string_view* rest = nullptr) {
  size_t b = line.find_first_not_of(" \t");
  if (b == std::string_view::npos) b = line.size();
  size_t e = line.find_first_of(" \t", b);
  if (e == std::string_view::npos) e = line.size();
  if (rest) {
    std::string_view r = line.substr(e);
    size_t rb = r.find_first_not_of(" \t");
    *rest = rb == std::string_view::npos ? std::string_view() : r.substr(rb);
  }
  return line.substr(b, e - b);
}

int msLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(left.count());
}

// Sends all of `data` on the non-blocking stream socket `fd`, the first sendmsg carrying
// `fds` as SCM_RIGHTS (the kernel attaches them to the first bytes it queues, so a short
// send never loses or repeats them). Waits with poll() until `deadline`.
// Returns 0 or an errno value (ETIMEDOUT when the peer did not read in time).
int sendWithFds(int fd, std::string_view data, const int* fds, size_t nfds,
                Clock::time_point deadline) {
  union {
    cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * kRuntimeApiFdsPerMessage)];
  } ctrl;
  bool fds_pending = nfds > 0;
  size_t off = 0;
  while (off < data.size()) {
    iovec iov{const_cast<char*>(data.data() + off), data.size() - off};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fds_pending) {
      std::memset(&ctrl, 0, sizeof(ctrl));
      msg.msg_control = ctrl.buf;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
      std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      fds_pending = false;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return errno;
    int left = msLeft(deadline);
    if (left == 0) return ETIMEDOUT;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, left) < 0 && errno != EINTR) return errno;
  }
  return 0;
}

// A listening UNIX socket bound at `tmp` (replacing a file left there by a crashed
// process that had our pid), with the file's mode set before listen(): until then a
// connect() is refused, so no client ever reaches it with the umask's mode. `st`: the
// file's stat (st_dev/st_ino). Errors name `path`, the socket being created.
Result<int> listenAt(const std::string& path, const std::string& tmp, int mode, struct stat& st) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (tmp.size() >= sizeof(sun.sun_path))
    return Status::error(fmt::format(
        "runtime socket {}: path too long (with the temporary suffix it must stay under {} "
        "bytes: {})",
        path, sizeof(sun.sun_path), tmp));
  std::memcpy(sun.sun_path, tmp.c_str(), tmp.size() + 1);
  ::unlink(tmp.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return pathError(path, "socket", errno);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
    Status failed = pathError(path, "bind " + tmp, errno);
    ::close(fd);
    return failed;
  }
  Status failed;
  if (::chmod(tmp.c_str(), static_cast<mode_t>(mode & 07777)) != 0)
    failed = pathError(path, "chmod " + tmp, errno);
  else if (::listen(fd, kBacklog) != 0)
    failed = pathError(path, "listen", errno);
  else if (::lstat(tmp.c_str(), &st) != 0)
    failed = pathError(path, "stat " + tmp, errno);
  if (!failed.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return failed;
  }
  return fd;
}

}  // namespace

std::string escapeSocketKey(std::string_view key) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(key.size());
  for (char ch : key) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '%' || isControlByte(c)) {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

bool unescapeSocketKey(std::string_view text, std::string& key) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  key.clear();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      key.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return false;
    int hi = hex(text[i + 1]), lo = hex(text[i + 2]);
    if (hi < 0 || lo < 0) return false;
    key.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool isErrorReply(std::string_view reply) {
  std::string_view first = reply.substr(0, reply.find('\n'));
  if (!first.empty() && first.back() == '\r') first.remove_suffix(1);
  return first.starts_with("error: ") || first == "Success=0";
}

// ---------------------------------------------------------------------------------------
// One client connection: a pipe and an idle timer, both closed by close(); the last close
// callback deletes the object (the only `delete`).

class RuntimeApi::Connection {
 public:
  Connection(RuntimeApi& api, uv_loop_t* loop);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&pipe_); }
  /// Starts reading commands.
  void start();
  /// Sends `message` as the last reply and closes once it is written; no further command
  /// is read.
  void refuse(std::string_view message);
  /// The RuntimeApi is going away: no more forget() calls to it.
  void detach() { api_ = nullptr; }
  /// Closes both handles; pending replies are dropped. Idempotent.
  void close();

 private:
  ~Connection() = default;
  static void onAllocCb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWriteCb(uv_write_t* req, int status);
  static void onTimerCb(uv_timer_t* t);
  static void onCloseCb(uv_handle_t* h);
  struct WriteReq {
    uv_write_t req{};
    Connection* conn = nullptr;
    std::string data;
  };

  void onRead(ssize_t nread);
  void onWritten(int status, size_t n);
  void processInput();
  void handleLine(std::string_view line);
  void sendSockets(std::string_view args);
  void send(std::string wire);
  void finish();
  void setReading(bool on);
  void touch();

  uv_pipe_t pipe_{};
  uv_timer_t timer_{};
  RuntimeApi* api_;  // null once the RuntimeApi closed
  std::shared_ptr<Callbacks> callbacks_;
  int idle_timeout_ms_;
  std::string in_;       // bytes read and not yet handled, from in_pos_
  size_t in_pos_ = 0;    // start of the first unhandled line
  size_t scan_pos_ = 0;  // where the search for '\n' resumes
  size_t pending_ = 0;   // bytes handed to uv_write and not yet written
  bool reading_ = false;
  bool eof_ = false;        // the client half-closed: no more input
  bool paused_ = false;     // commands wait for output to drain (onWritten resumes)
  bool finishing_ = false;  // no more commands: close once the output is written
  bool closing_ = false;
  int open_handles_ = 2;
  std::array<char, kReadChunk> rbuf_;
};

RuntimeApi::Connection::Connection(RuntimeApi& api, uv_loop_t* loop)
    : api_(&api), callbacks_(api.callbacks_), idle_timeout_ms_(api.opt_.idle_timeout_ms) {
  uv_pipe_init(loop, &pipe_, 0);
  pipe_.data = this;
  uv_timer_init(loop, &timer_);
  timer_.data = this;
}

void RuntimeApi::Connection::start() {
  touch();
  setReading(true);
}

void RuntimeApi::Connection::refuse(std::string_view message) {
  touch();
  send(frameReply(message));
  finish();
}

void RuntimeApi::Connection::close() {
  if (closing_) return;
  closing_ = true;
  if (api_ != nullptr) api_->forget(this);
  api_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), &Connection::onCloseCb);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &Connection::onCloseCb);
}

void RuntimeApi::Connection::onCloseCb(uv_handle_t* h) {
  auto* self = static_cast<Connection*>(h->data);
  if (--self->open_handles_ == 0) delete self;
}

void RuntimeApi::Connection::setReading(bool on) {
  if (closing_ || on == reading_) return;
  if (on && uv_read_start(stream(), &Connection::onAllocCb, &Connection::onReadCb) != 0) {
    close();
    return;
  }
  if (!on) uv_read_stop(stream());
  reading_ = on;
}

// Restarts the idle timer (from the loop's cached time).
void RuntimeApi::Connection::touch() {
  if (idle_timeout_ms_ > 0 && !closing_)
    uv_timer_start(&timer_, &Connection::onTimerCb, static_cast<uint64_t>(idle_timeout_ms_), 0);
}

void RuntimeApi::Connection::onTimerCb(uv_timer_t* t) {
  auto* self = static_cast<Connection*>(t->data);
  logDebug("runtime API: closing a connection idle for {} ms", self->idle_timeout_ms_);
  self->close();
}

void RuntimeApi::Connection::onAllocCb(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(h->data);
  *buf = uv_buf_init(self->rbuf_.data(), static_cast<unsigned>(self->rbuf_.size()));
}

void RuntimeApi::Connection::onReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  static_cast<Connection*>(s->data)->onRead(nread);
}

void RuntimeApi::Connection::onRead(ssize_t nread) {
  if (nread == 0) return;  // EAGAIN
  if (nread == UV_EOF) {
    reading_ = false;  // libuv stopped reading
    eof_ = true;
  } else if (nread < 0) {
    logDebug("runtime API: read: {}", uv_strerror(static_cast<int>(nread)));
    close();
    return;
  } else {
    in_.append(rbuf_.data(), static_cast<size_t>(nread));
  }
  touch();
  processInput();
}

// Handles the complete lines read so far, in order. Stops early when the output must drain
// first (paused_; onWritten() calls again) or the connection finishes or closes.
void RuntimeApi::Connection::processInput() {
  while (!closing_ && !finishing_) {
    if (pending_ > kHighWater) {
      paused_ = true;
      break;
    }
    size_t nl = in_.find('\n', scan_pos_);
    size_t next = nl + 1;
    if (nl == std::string::npos) {
      size_t have = in_.size() - in_pos_;
      if (have > kRuntimeApiMaxLine + 1) {  // +1: a "\r" may still come before the "\n"
        nl = in_.size();
      } else if (eof_ && have > 0) {
        nl = next = in_.size();  // the last line needs no "\n"
      } else {
        scan_pos_ = in_.size();
        break;
      }
    }
    std::string_view line(in_.data() + in_pos_, nl - in_pos_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kRuntimeApiMaxLine) {
      logWarning("runtime API: closing a connection that sent a line longer than {} bytes",
                 kRuntimeApiMaxLine);
      refuse("error: command line too long (max 65536 bytes)");
      return;
    }
    // `_getsocks` writes on the socket directly: nothing may still be queued before it.
    if (pending_ > 0 && firstWord(line) == kGetsocks) {
      paused_ = true;
      break;
    }
    in_pos_ = scan_pos_ = std::min(next, in_.size());
    if (!line.empty()) handleLine(line);  // may close: checked by the loop condition
  }
  if (closing_) return;
  in_.erase(0, in_pos_);
  scan_pos_ -= in_pos_;
  in_pos_ = 0;
  if (eof_ && in_.empty() && !paused_) finish();
  setReading(!paused_ && !finishing_ && !eof_);
}

void RuntimeApi::Connection::handleLine(std::string_view line) {
  if (hasControlByte(line)) {
    send(frameReply("error: malformed command line"));
    return;
  }
  std::string_view args;
  if (firstWord(line, &args) == kGetsocks) {
    sendSockets(args);
    return;
  }
  // A copy: the Handler may destroy the RuntimeApi, and with it api_->callbacks_.
  std::shared_ptr<Callbacks> callbacks = callbacks_;
  std::string reply = callbacks->handler ? callbacks->handler(line) : std::string();
  if (closing_) return;
  // The Handler may have run for a while (a reload): the idle time starts now.
  uv_update_time(pipe_.loop);
  touch();
  send(frameReply(reply));
}

// `_getsocks` (protocol in the header). Called with no output pending, so the direct
// writes here cannot interleave with libuv's queue.
void RuntimeApi::Connection::sendSockets(std::string_view args) {
  if (!callbacks_->expose_fd_listeners) {
    send(frameReply("error: _getsocks: expose_fd_listeners is not enabled on this runtime socket"));
    return;
  }
  if (!args.empty()) {
    send(frameReply("error: _getsocks: takes no argument"));
    return;
  }
  std::shared_ptr<Callbacks> callbacks = callbacks_;
  std::vector<PassedSocket> sockets;
  if (callbacks->lister) sockets = callbacks->lister();
  if (closing_) return;
  for (const PassedSocket& s : sockets) {
    if (s.fd < 0 || ::fcntl(s.fd, F_GETFD) < 0) {
      logError("runtime API: _getsocks: socket \"{}\" is not open", escapeSocketKey(s.key));
      send(frameReply("error: _getsocks: socket \"" + escapeSocketKey(s.key) + "\" is not open"));
      return;
    }
  }
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&pipe_), &fd) != 0) {
    close();
    return;
  }
  std::string head = "_getsocks v1 " + std::to_string(sockets.size()) + "\n";
  for (const PassedSocket& s : sockets) head += "key " + escapeSocketKey(s.key) + "\n";
  Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kFdPassTimeoutMs);
  int err = sendWithFds(fd, head, nullptr, 0, deadline);
  std::vector<int> batch;
  for (size_t i = 0; err == 0 && i < sockets.size(); i += batch.size()) {
    size_t n = std::min(kRuntimeApiFdsPerMessage, sockets.size() - i);
    batch.clear();
    for (size_t j = i; j < i + n; ++j) batch.push_back(sockets[j].fd);
    err = sendWithFds(fd, "fds " + std::to_string(n) + "\n", batch.data(), n, deadline);
  }
  if (err == 0) err = sendWithFds(fd, "\n", nullptr, 0, deadline);
  if (err != 0) {
    logWarning("runtime API: _getsocks: sending {} sockets failed: {}", sockets.size(),
               std::strerror(err));
    close();
    return;
  }
  logInfo("runtime API: _getsocks: passed {} listening sockets", sockets.size());
  uv_update_time(pipe_.loop);
  touch();
}

// Queues `wire` after what is pending: written at once when possible (uv_try_write), the
// rest through uv_write. Closes the connection on a write error.
void RuntimeApi::Connection::send(std::string wire) {
  if (closing_ || wire.empty()) return;
  if (pending_ == 0) {
    uv_buf_t b = uv_buf_init(wire.data(), static_cast<unsigned>(wire.size()));
    int n = uv_try_write(stream(), &b, 1);
    if (n == static_cast<int>(wire.size())) return;
    if (n < 0 && n != UV_EAGAIN) {
      logDebug("runtime API: write: {}", uv_strerror(n));
      close();
      return;
    }
    if (n > 0) wire.erase(0, static_cast<size_t>(n));
  }
  auto* w = new WriteReq;
  w->data = std::move(wire);
  w->conn = this;
  w->req.data = w;
  size_t len = w->data.size();
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(len));
  int rc = uv_write(&w->req, stream(), &b, 1, &Connection::onWriteCb);
  if (rc != 0) {
    delete w;
    logDebug("runtime API: write: {}", uv_strerror(rc));
    close();
    return;
  }
  pending_ += len;
}

void RuntimeApi::Connection::onWriteCb(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  Connection* self = w->conn;
  size_t n = w->data.size();
  delete w;
  self->onWritten(status, n);
}

void RuntimeApi::Connection::onWritten(int status, size_t n) {
  pending_ -= n;
  if (closing_) return;  // UV_ECANCELED: the handle is closing
  if (status != 0) {
    logDebug("runtime API: write: {}", uv_strerror(status));
    close();
    return;
  }
  touch();
  if (finishing_) {
    if (pending_ == 0) close();
    return;
  }
  if (paused_ && pending_ <= kLowWater) {
    paused_ = false;
    processInput();  // pauses again if a `_getsocks` still waits for pending_ == 0
  }
}

// No more commands: stop reading, close once the output is written.
void RuntimeApi::Connection::finish() {
  finishing_ = true;
  setReading(false);
  if (pending_ == 0) close();
}

// ---------------------------------------------------------------------------------------

struct RuntimeApi::ListenHandle {
  uv_pipe_t pipe{};
  RuntimeApi* api = nullptr;  // null once the RuntimeApi closed
  static void onCloseCb(uv_handle_t* h) { delete static_cast<ListenHandle*>(h->data); }
};

Result<std::unique_ptr<RuntimeApi>> RuntimeApi::open(uv_loop_t* loop, const RuntimeApiOptions& opt,
                                                     Handler handler, SocketLister lister) {
  std::unique_ptr<RuntimeApi> api(new RuntimeApi(loop, opt, std::move(handler), std::move(lister)));
  if (Status st = api->bindAndListen(); !st.ok()) {
    api->close();
    return st;
  }
  logInfo("runtime API: listening on {}{}", opt.path,
          opt.expose_fd_listeners ? " (expose_fd_listeners)" : "");
  return api;
}

RuntimeApi::RuntimeApi(uv_loop_t* loop, const RuntimeApiOptions& opt, Handler handler,
                       SocketLister lister)
    : loop_(loop), opt_(opt), callbacks_(std::make_shared<Callbacks>()) {
  callbacks_->handler = std::move(handler);
  callbacks_->lister = std::move(lister);
  callbacks_->expose_fd_listeners = opt.expose_fd_listeners;
}

RuntimeApi::~RuntimeApi() {
  close();
}

// Binds a temporary name next to the path, sets its mode, listens, and only then renames
// it over the path: the path never goes missing and never has another mode, even when it
// replaces the socket of a running process (binary upgrade).
Status RuntimeApi::bindAndListen() {
  const std::string& path = opt_.path;
  if (path.empty()) return Status::error("runtime socket: no path given");
  if (path[0] == '@')
    return Status::error("runtime socket " + path + ": abstract names are not supported");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
    return Status::error("runtime socket " + path + ": exists and is not a socket");
  std::string tmp = path + "." + std::to_string(::getpid()) + ".tmp";
  auto fd = listenAt(path, tmp, opt_.mode, st);
  if (!fd.ok()) return fd.status();
  dev_ = st.st_dev;
  ino_ = st.st_ino;

  listen_ = new ListenHandle;
  uv_pipe_init(loop_, &listen_->pipe, 0);
  listen_->pipe.data = listen_;
  listen_->api = this;
  int rc = uv_pipe_open(&listen_->pipe, *fd);
  if (rc != 0) ::close(*fd);  // not adopted by the handle
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listen_->pipe), kBacklog,
                   &RuntimeApi::onConnectionCb);
  if (rc != 0) {
    ::unlink(tmp.c_str());
    return Status::error("runtime socket " + path + ": listen: " + uv_strerror(rc));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status failed = pathError(path, "rename " + tmp, errno);
    ::unlink(tmp.c_str());
    return failed;
  }
  bound_ = true;
  return Status();
}

void RuntimeApi::onConnectionCb(uv_stream_t* server, int status) {
  auto* lh = static_cast<ListenHandle*>(server->data);
  if (lh->api == nullptr) return;
  if (status != 0) {
    logWarning("runtime socket {}: accept: {}", lh->api->opt_.path, uv_strerror(status));
    return;
  }
  lh->api->acceptOne();
}

void RuntimeApi::acceptOne() {
  auto* c = new Connection(*this, loop_);
  if (int rc = uv_accept(reinterpret_cast<uv_stream_t*>(&listen_->pipe), c->stream()); rc != 0) {
    logWarning("runtime socket {}: accept: {}", opt_.path, uv_strerror(rc));
    c->close();  // frees it
    return;
  }
  connections_.insert(c);
  if (opt_.max_connections > 0 && connections_.size() > static_cast<size_t>(opt_.max_connections)) {
    logWarning("runtime socket {}: refusing a connection: {} already open", opt_.path,
               opt_.max_connections);
    c->refuse(fmt::format("error: too many connections to the runtime API (max {})",
                          opt_.max_connections));
    return;
  }
  c->start();
}

void RuntimeApi::close() {
  if (closed_) return;
  closed_ = true;
  // First the path (a client that sees its connection end finds it gone), and only our
  // own socket file: a process that replaced it (binary upgrade) keeps its path.
  struct stat st {};
  if (bound_ && ::lstat(opt_.path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    ::unlink(opt_.path.c_str());
  bound_ = false;
  if (listen_ != nullptr) {
    listen_->api = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&listen_->pipe), &ListenHandle::onCloseCb);
    listen_ = nullptr;
  }
  std::unordered_set<Connection*> open;
  open.swap(connections_);
  for (Connection* c : open) {
    c->detach();
    c->close();
  }
}

}  // namespace crescent::core
