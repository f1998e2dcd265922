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

Result<ListenerPtr> Listener::open(EventLoop& loop, int fd, bool unix_socket, OnPending cb,
                                   void* ctx) {
  ListenerPtr l(new Listener(loop, unix_socket, cb, ctx));
  int rc = unix_socket ? uv_pipe_open(&l->h_.pipe, fd) : uv_tcp_open(&l->h_.tcp, fd);
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->h_), 1024, &Listener::onConnectionCb);
  if (rc != 0) {
    ::close(fd);
    return Status::error(std::string("cannot poll listening socket: ") + uv_strerror(rc));
  }
  return l;
}

Listener::Listener(EventLoop& loop, bool unix_socket, OnPending cb, void* ctx)
    : loop_(loop), unix_(unix_socket), cb_(cb), ctx_(ctx) {
  if (unix_socket) {
    uv_pipe_init(loop.uv(), &h_.pipe, 0);
    h_.pipe.data = this;
  } else {
    uv_tcp_init(loop.uv(), &h_.tcp);
    h_.tcp.data = this;
  }
}

void Listener::onConnectionCb(uv_stream_t* s, int status) {
  auto* self = static_cast<Listener*>(s->data);
  if (self->closing_) return;
  if (status == UV_EMFILE || status == UV_ENFILE || status == UV_ENOBUFS || status == UV_ENOMEM)
    return;  // a shortage: libuv polls again later
  if (status != 0) {
    // The socket itself cannot accept any more (shut down): stop polling it now, or libuv
    // calls us again at once, forever. Closing sets the handle's fd to -1, which ends
    // libuv's accept loop.
    self->close();
    return;
  }
  self->cb_(self->ctx_, *self);
}

StreamPtr Listener::accept() {
  paused_ = false;
  StreamPtr s = Stream::create(loop_, unix_ ? Stream::Kind::kPipe : Stream::Kind::kTcp);
  if (s->accept(reinterpret_cast<uv_stream_t*>(&h_)) != 0) return StreamPtr();
  return s;
}

void Listener::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&h_), &Listener::onCloseCb);
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
