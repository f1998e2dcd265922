#include "core/net/listener.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace crescent::core {
namespace {

Status errnoError(const Address& addr, const char* what) {
  return Status::error("cannot " + std::string(what) + " " + addr.toString() + ": " +
                       std::strerror(errno));
}

// A UNIX socket path left behind by a process that is gone: connect() is refused.
void removeStaleUnixSocket(const Address& addr) {
  std::string path = addr.unixPath();
  if (path.empty() || path[0] == '@') return;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  bool alive = ::connect(fd, addr.sockaddrPtr(), addr.sockaddrLen()) == 0;
  ::close(fd);
  if (!alive) ::unlink(path.c_str());
}

}  // namespace

Result<int> openListenSocket(const Address& addr, int backlog) {
  int family = addr.sockaddrPtr()->sa_family;
  if (addr.isUnix()) removeStaleUnixSocket(addr);
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errnoError(addr, "create a socket for");
  int one = 1;
  if (addr.isIp()) {
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  if (::bind(fd, addr.sockaddrPtr(), addr.sockaddrLen()) != 0) {
    Status st = errnoError(addr, "bind");
    ::close(fd);
    return st;
  }
  if (::listen(fd, backlog) != 0) {
    Status st = errnoError(addr, "listen on");
    ::close(fd);
    return st;
  }
  return fd;
}

Address socketLocalAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return Address::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

namespace {

// accept(2) "ERRORS": the process or the system is out of something. The connection stays
// in the kernel's queue; accepting again later may succeed.
bool isShortage(int err) {
  return err == UV_EMFILE || err == UV_ENFILE || err == UV_ENOBUFS || err == UV_ENOMEM;
}

// The listening socket itself cannot accept (shut down, closed under us, not a socket or
// not a listening one): retrying can never succeed.
bool isDead(int err) {
  return err == UV_EINVAL || err == UV_EBADF || err == UV_ENOTSOCK || err == UV_ENOTSUP;
}

int acceptNonBlocking(int listen_fd) {
  return ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

}  // namespace

Result<ListenerPtr> Listener::open(EventLoop& loop, int fd, bool unix_socket,
                                   ListenerHandler& handler) {
  ListenerPtr l(new Listener(loop, fd, unix_socket, handler));
  int rc = uv_poll_init(loop.uv(), &l->poll_, fd);  // also makes the fd non-blocking
  if (rc != 0) {
    // No handle to close: free it here, and the fd with it.
    Listener* raw = l.release();
    ::close(fd);
    delete raw;
    return Status::error(std::string("cannot poll listening socket: ") + uv_strerror(rc));
  }
  l->poll_.data = l.get();
  l->updatePoll();
  return l;
}

Listener::Listener(EventLoop& loop, int fd, bool unix_socket, ListenerHandler& handler)
    : loop_(loop),
      fd_(fd),
      unix_(unix_socket),
      handler_(handler),
      accept_call_(&acceptNonBlocking) {}

void Listener::updatePoll() {
  bool want = !held_ && !short_ && !closing_;
  if (want == polling_) return;
  if (want)
    uv_poll_start(&poll_, UV_READABLE, &Listener::onPollCb);
  else
    uv_poll_stop(&poll_);
  polling_ = want;
}

void Listener::onPollCb(uv_poll_t* p, int status, int) {
  auto* self = static_cast<Listener*>(p->data);
  if (self->closing_) return;
  if (status < 0) return self->dead(status);
  for (int i = 0; i < kMaxAcceptsPerEvent; ++i) {
    if (!self->takeOne()) return;
    self->handler_.onListenerPending(*self);
    if (self->closing_) return;
    if (self->pending_fd_ >= 0) return self->hold();  // not taken: kept until accept()
  }
}

bool Listener::takeOne() {
  while (pending_fd_ < 0) {
    // A placeholder for the fd this connection will need next (its server's socket),
    // taken first: a shortage then pauses accepting while one fd per connection accepted
    // in this burst is still free, instead of when the last fd went to a client whose
    // server connect can then only fail. The placeholders go on the next loop turn,
    // just before those sessions read their requests and connect.
    int placeholder = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    if (placeholder < 0) {
      int err = -errno;
      if (isShortage(err)) {
        shortage(err);
        return false;
      }
      if (isDead(err)) {
        dead(err);
        return false;
      }
    }
    int fd = accept_call_(fd_);
    if (fd >= 0) {
      pending_fd_ = fd;
      if (placeholder >= 0) keepPlaceholder(placeholder);
      break;
    }
    int err = -errno;  // libuv's error codes are negative errnos on Unix
    if (placeholder >= 0) ::close(placeholder);
    if (err == UV_EINTR) continue;
    if (err == UV_EAGAIN || err == -EWOULDBLOCK) return false;
    if (isShortage(err)) {
      shortage(err);
      return false;
    }
    if (isDead(err)) {
      dead(err);
      return false;
    }
    ++skipped_;  // that connection only (each one took a queued connection): the next
  }
  return true;
}

StreamPtr Listener::accept() {
  if (pending_fd_ < 0) return StreamPtr();
  int fd = pending_fd_;
  pending_fd_ = -1;
  if (held_) {
    held_ = false;
    updatePoll();
  }
  StreamPtr s = Stream::create(loop_, unix_ ? Stream::Kind::kPipe : Stream::Kind::kTcp);
  if (s->open(fd) != 0) {
    ::close(fd);
    ++skipped_;
    return StreamPtr();
  }
  return s;
}

void Listener::keepPlaceholder(int fd) {
  placeholders_.push_back(fd);
  if (!release_) release_ = Timer::create(loop_, &Listener::onReleaseCb, this);
  if (!release_->active()) release_->start(0);
}

void Listener::releasePlaceholders() {
  for (int fd : placeholders_) ::close(fd);
  placeholders_.clear();
}

void Listener::onReleaseCb(void* ctx) {
  static_cast<Listener*>(ctx)->releasePlaceholders();
}

void Listener::hold() {
  if (pending_fd_ < 0 || closing_) return;
  held_ = true;
  updatePoll();
}

void Listener::resume() {
  if (closing_ || !short_) return;
  short_ = false;
  if (retry_) retry_->stop();
  updatePoll();
}

void Listener::shortage(int uv_error) {
  ++shortages_;
  short_ = true;
  updatePoll();
  if (!retry_) retry_ = Timer::create(loop_, &Listener::onRetryCb, this);
  retry_->start(kShortageRetryMs);
  handler_.onListenerShortage(*this, uv_error);  // may release us: last statement
}

void Listener::onRetryCb(void* ctx) {
  auto* self = static_cast<Listener*>(ctx);
  if (self->closing_ || !self->short_) return;
  self->short_ = false;
  self->updatePoll();
}

void Listener::dead(int uv_error) {
  close();
  handler_.onListenerClosed(*this, uv_error);  // may release us: last statement
}

bool Listener::listening() const {
  if (closing_) return false;
  int on = 0;
  socklen_t len = sizeof(on);
  return ::getsockopt(fd_, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on != 0;
}

void Listener::close() {
  if (closing_) return;
  closing_ = true;
  polling_ = false;
  retry_.reset();  // no callback after this
  release_.reset();
  releasePlaceholders();
  // uv_close stops the poll at once (the fd leaves epoll), so the fd can go now: under a
  // shortage, every fd counts.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), &Listener::onCloseCb);
  ::close(fd_);
  fd_ = -1;
  if (pending_fd_ >= 0) ::close(pending_fd_);  // a held connection nobody took
  pending_fd_ = -1;
  held_ = false;
}

void Listener::release() {
  owned_ = false;
  if (closed_)
    delete this;
  else
    close();
}

void Listener::onCloseCb(uv_handle_t* h) {
  auto* self = static_cast<Listener*>(h->data);
  self->closed_ = true;
  if (!self->owned_) delete self;
}

}  // namespace crescent::core
