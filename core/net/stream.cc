#include "core/net/stream.h"

#include <algorithm>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace crescent::core {

namespace {
// Linux 4.2+: bind() fixes the address only; connect() picks the port for the 4-tuple.
#if defined(IP_BIND_ADDRESS_NO_PORT)
constexpr int kIpBindAddressNoPort = IP_BIND_ADDRESS_NO_PORT;
#elif defined(__linux__)
constexpr int kIpBindAddressNoPort = 24;  // older headers
#else
constexpr int kIpBindAddressNoPort = -1;  // not available: bind() reserves a port
#endif
}  // namespace

// The transport filter's state, allocated only by startFilter(): a plain stream carries
// one null pointer.
struct Stream::FilterState {
  std::unique_ptr<StreamFilter> filter;
  uv_idle_t idle{};               // runs filterPump() on a later loop turn (see readStart())
  std::vector<Buffer> out;        // scratch for takeOutput(), kept to reuse its capacity
  std::string early;              // written before the handshake finished; sent after it
  std::string error;              // why the handshake failed (tlsError())
  bool ready = false;             // the handshake finished
  bool reported = false;          // onStreamTlsReady was called (or is due no more)
  bool socket_eof = false;        // the socket reached EOF: no more input than what is kept
  bool read_done = false;         // EOF or a record error was delivered: nothing more to read
  bool shutdown_pending = false;  // shutdown() during the handshake
};

struct Stream::WriteReq {
  uv_write_t req;
  Buffer buf;
  std::string str;
  Bytes bytes;
  size_t len;
};

StreamPtr Stream::create(EventLoop& loop, Kind kind) {
  return StreamPtr(new Stream(loop, kind));
}

Stream::Stream(EventLoop& loop, Kind kind) : loop_(loop), kind_(kind) {
  int rc =
      kind == Kind::kTcp ? uv_tcp_init(loop.uv(), &h_.tcp) : uv_pipe_init(loop.uv(), &h_.pipe, 0);
  if (rc != 0) std::abort();
  uv()->data = this;
  last_activity_ = loop.now();
}

Stream::~Stream() = default;

int Stream::accept(uv_stream_t* server) {
  int rc = uv_accept(server, uv());
  if (rc == 0) last_activity_ = loop_.now();
  return rc;
}

int Stream::open(int fd) {
  int rc = kind_ == Kind::kTcp ? uv_tcp_open(&h_.tcp, fd) : uv_pipe_open(&h_.pipe, fd);
  if (rc == 0) last_activity_ = loop_.now();
  return rc;
}

int Stream::bindLocal(const Address& local, bool no_port) {
  uv_os_fd_t existing;
  if (kind_ != Kind::kTcp || !local.isIp() || closing_ ||
      uv_fileno(reinterpret_cast<uv_handle_t*>(&h_.tcp), &existing) == 0) {
    return UV_EINVAL;
  }
  int fd = ::socket(local.sockaddrPtr()->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  // Every step on the raw socket, before libuv owns it, so that errors come back here.
  int rc = 0;
  int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) rc = -errno;
  if (rc == 0 && no_port && local.port() == 0 && kIpBindAddressNoPort >= 0 &&
      ::setsockopt(fd, IPPROTO_IP, kIpBindAddressNoPort, &one, sizeof(one)) != 0) {
    // Kernels before 4.2 lack it: the bind below then reserves a port per address, which
    // still works, with fewer connections possible per source address.
    if (errno != ENOPROTOOPT) rc = -errno;
  }
  if (rc == 0 && ::bind(fd, local.sockaddrPtr(), local.sockaddrLen()) != 0) rc = -errno;
  if (rc == 0) rc = uv_tcp_open(&h_.tcp, fd);  // sets O_NONBLOCK
  if (rc != 0) ::close(fd);
  return rc;
}

int Stream::connect(const Address& addr) {
  connect_req_.data = this;
  last_activity_ = loop_.now();
  if (kind_ == Kind::kTcp) {
    return uv_tcp_connect(&connect_req_, &h_.tcp, addr.sockaddrPtr(), &Stream::onConnectCb);
  }
  std::string path = addr.unixPath();
  uv_pipe_connect(&connect_req_, &h_.pipe, path.c_str(), &Stream::onConnectCb);
  return 0;
}

int Stream::connectNow(const Address& addr) {
  if (kind_ != Kind::kPipe || !addr.isUnix()) return UV_EINVAL;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (::connect(fd, addr.sockaddrPtr(), addr.sockaddrLen()) != 0) {
    int err = -errno;
    ::close(fd);
    return err;
  }
  int rc = uv_pipe_open(&h_.pipe, fd);
  if (rc != 0) {
    ::close(fd);
    return rc;
  }
  last_activity_ = loop_.now();
  return 0;
}

void Stream::onConnectCb(uv_connect_t* req, int status) {
  auto* self = static_cast<Stream*>(req->data);
  if (self->closing_ || self->handler_ == nullptr) return;
  self->last_activity_ = self->loop_.now();
  self->handler_->onStreamConnected(*self, status);
}

void Stream::readStart() {
  if (reading_ || closing_) return;
  if (filter_ != nullptr) {
    reading_ = filterReadStart();
    return;
  }
  if (uv_read_start(uv(), &Stream::onAllocCb, &Stream::onReadCb) == 0) reading_ = true;
}

void Stream::readStop() {
  if (!reading_ || closing_) return;
  uv_read_stop(uv());
  reading_ = false;
}

void Stream::onAllocCb(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Stream*>(h->data);
  if (!self->read_buf_) self->read_buf_ = BufferPool::local().take();
  buf->base = self->read_buf_.data();
  buf->len = self->read_buf_.capacity();
}

void Stream::onReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<Stream*>(s->data);
  if (nread == 0) return;  // EAGAIN: keep the chunk for the next read
  if (nread > 0) {
    Buffer b = std::move(self->read_buf_);
    b.commit(static_cast<size_t>(nread));
    self->bytes_in_ += static_cast<uint64_t>(nread);
    self->last_activity_ = self->loop_.now();
    if (self->filter_ != nullptr) return self->filterInput(std::move(b));
    if (self->handler_ != nullptr && !self->closing_)
      self->handler_->onStreamData(*self, std::move(b));
    return;
  }
  self->read_buf_.release();  // an idle or finished stream holds no buffer
  if (self->closing_ || self->handler_ == nullptr) return;
  if (self->filter_ != nullptr) return self->filterEof(static_cast<int>(nread));
  if (nread == UV_EOF) {
    // libuv stops reading after EOF on its own.
    self->reading_ = false;
    uv_read_stop(s);
    self->handler_->onStreamEof(*self);
  } else {
    self->handler_->onStreamError(*self, static_cast<int>(nread));
  }
}

void Stream::write(Buffer data) {
  if (closing_ || data.empty()) return;
  if (filter_ != nullptr) return filterWrite(data.data(), data.size());
  queueWrite(data.data(), data.size(), &data, nullptr);
}

void Stream::write(std::string data) {
  if (closing_ || data.empty()) return;
  if (filter_ != nullptr) return filterWrite(data.data(), data.size());
  queueWrite(data.data(), data.size(), nullptr, &data);
}

void Stream::write(Bytes data) {
  if (closing_ || data.empty()) return;
  if (!data.borrowed()) return write(std::move(data).take());
  std::string_view v = data.view();
  if (filter_ != nullptr) return filterWrite(v.data(), v.size());
  queueWrite(v.data(), v.size(), nullptr, nullptr, &data);
}

void Stream::write(std::string head, Buffer body) {
  if (closing_) return;
  if (head.empty()) return write(std::move(body));
  if (filter_ != nullptr) {
    // Both are encoded before anything is sent: their records leave in one writev.
    filterWrite(head.data(), head.size(), /*flush=*/body.empty());
    if (!body.empty()) filterWrite(body.data(), body.size());
    return;
  }
  if (body.empty() || writes_in_flight_ != 0 || shutdown_started_) {
    write(std::move(head));
    write(std::move(body));
    return;
  }
  uv_buf_t bufs[2] = {uv_buf_init(head.data(), static_cast<unsigned>(head.size())),
                      uv_buf_init(body.data(), static_cast<unsigned>(body.size()))};
  int w = uv_try_write(uv(), bufs, 2);
  size_t done = w > 0 ? static_cast<size_t>(w) : 0;
  if (done > 0) wrote(done);
  if (done < head.size()) {
    queueWrite(head.data() + done, head.size() - done, nullptr, &head);
    queueWrite(body.data(), body.size(), &body, nullptr);
    return;
  }
  done -= head.size();
  if (done < body.size()) queueWrite(body.data() + done, body.size() - done, &body, nullptr);
}

void Stream::queueWrite(const char* p, size_t n, Buffer* b, std::string* s, Bytes* x) {
  if (writes_in_flight_ == 0 && !shutdown_started_) {
    uv_buf_t ub = uv_buf_init(const_cast<char*>(p), static_cast<unsigned>(n));
    int w = uv_try_write(uv(), &ub, 1);
    if (w > 0) {
      wrote(static_cast<size_t>(w));
      if (static_cast<size_t>(w) == n) return;
      p += w;
      n -= static_cast<size_t>(w);
    }
    // UV_EAGAIN or another error: uv_write reports a real error through its callback.
  }
  auto* req = new WriteReq();
  if (b != nullptr) {
    // Keep the buffer alive; p points inside it.
    req->buf = std::move(*b);
  } else if (x != nullptr) {
    req->bytes = std::move(*x);  // borrowed: the range does not move with its keeper
  } else {
    size_t off = static_cast<size_t>(p - s->data());
    req->str = std::move(*s);
    p = req->str.data() + off;
  }
  req->len = n;
  req->req.data = this;
  uv_buf_t ub = uv_buf_init(const_cast<char*>(p), static_cast<unsigned>(n));
  int rc = uv_write(&req->req, uv(), &ub, 1, &Stream::onWriteCb);
  if (rc != 0) {
    // Refused at once: no socket (UV_EBADF) or no longer writable (UV_EPIPE). The bytes
    // cannot go; the owner must hear of it even when it is not reading (it may have
    // stopped for back-pressure and wait for onStreamDrained), on a later turn.
    delete req;
    reportLater(rc);
    return;
  }
  ++writes_in_flight_;
  pending_ += n;
  if (pending_ >= high_water_) above_high_ = true;
}

void Stream::reportLater(int uv_error) {
  if (closing_ || report_error_ != 0) return;  // closed, or a report is due already
  report_error_ = uv_error;
  if (report_ == nullptr) {
    report_ = std::make_unique<uv_idle_t>();
    uv_idle_init(loop_.uv(), report_.get());
    report_->data = this;
    ++open_handles_;
  }
  uv_idle_start(report_.get(), &Stream::onReportCb);
}

void Stream::onReportCb(uv_idle_t* h) {
  auto* self = static_cast<Stream*>(h->data);
  uv_idle_stop(h);
  int err = self->report_error_;
  self->report_error_ = 0;
  if (self->closing_ || self->handler_ == nullptr) return;
  if (self->filter_ != nullptr && !self->filter_->reported)
    return self->filterReport(err, std::string("write failed: ") + uv_strerror(err));
  self->handler_->onStreamError(*self, err);  // may close the stream: last statement
}

void Stream::wrote(size_t n) {
  bytes_out_ += n;
  last_activity_ = loop_.now();
}

void Stream::onWriteCb(uv_write_t* r, int status) {
  auto* req = reinterpret_cast<WriteReq*>(r);
  auto* self = static_cast<Stream*>(r->data);
  size_t n = req->len;
  delete req;
  self->pending_ -= n;
  --self->writes_in_flight_;
  if (self->closing_ || self->handler_ == nullptr) return;
  if (status != 0) {
    if (self->filter_ != nullptr && !self->filter_->reported)
      return self->filterReport(status, std::string("write failed: ") + uv_strerror(status));
    self->handler_->onStreamError(*self, status);
    return;
  }
  self->wrote(n);
  if (self->above_high_ && self->pending_ <= self->low_water_) {
    self->above_high_ = false;
    self->handler_->onStreamDrained(*self);
  }
}

void Stream::shutdown() {
  if (shutdown_requested_ || closing_) return;
  shutdown_requested_ = true;
  if (filter_ != nullptr) {
    FilterState& f = *filter_;
    if (!f.ready && !f.reported) {
      f.shutdown_pending = true;  // after the handshake and the writes kept for it
      return;
    }
    if (f.ready) {
      f.filter->close();  // close_notify, queued after every record written before
      filterFlush();
    }
  }
  startShutdown();
}

void Stream::startShutdown() {
  shutdown_started_ = true;
  shutdown_req_.data = this;
  // libuv runs the shutdown after every queued write.
  // A stream that cannot be shut down (not connected any more) has nothing left to send.
  if (uv_shutdown(&shutdown_req_, uv(), &Stream::onShutdownCb) != 0) shutdown_done_ = true;
}

void Stream::onShutdownCb(uv_shutdown_t* req, int status) {
  auto* self = static_cast<Stream*>(req->data);
  if (status == UV_ECANCELED || self->closing_) return;
  self->shutdown_done_ = true;
  if (self->handler_ != nullptr) self->handler_->onStreamShutdownDone(*self);
}

// getpeername/getsockname for either kind of stream.
Address Stream::endpoint(bool peer) const {
  auto* self = const_cast<Stream*>(this);
  if (kind_ == Kind::kTcp) {
    sockaddr_storage ss{};
    int len = sizeof(ss);
    auto* sa = reinterpret_cast<sockaddr*>(&ss);
    int rc = peer ? uv_tcp_getpeername(&self->h_.tcp, sa, &len)
                  : uv_tcp_getsockname(&self->h_.tcp, sa, &len);
    return rc == 0 ? Address::fromSockaddr(sa, static_cast<socklen_t>(len)) : Address();
  }
  char path[sizeof(sockaddr_un::sun_path)];
  size_t n = sizeof(path);
  int rc = peer ? uv_pipe_getpeername(&self->h_.pipe, path, &n)
                : uv_pipe_getsockname(&self->h_.pipe, path, &n);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  if (rc == 0 && n < sizeof(un.sun_path))
    std::memcpy(un.sun_path, path, n);
  else
    n = 0;
  return Address::fromSockaddr(reinterpret_cast<sockaddr*>(&un),
                               static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n));
}

Address Stream::peerAddress() const {
  return endpoint(true);
}
Address Stream::localAddress() const {
  return endpoint(false);
}

void Stream::setNoDelay(bool on) {
  if (kind_ == Kind::kTcp) uv_tcp_nodelay(&h_.tcp, on ? 1 : 0);
}

void Stream::close() {
  if (closing_) return;
  closing_ = true;
  handler_ = nullptr;
  if (reading_) uv_read_stop(uv());
  reading_ = false;
  if (filter_ != nullptr)
    uv_close(reinterpret_cast<uv_handle_t*>(&filter_->idle), &Stream::onCloseCb);
  if (report_ != nullptr)
    uv_close(reinterpret_cast<uv_handle_t*>(report_.get()), &Stream::onCloseCb);
  uv_close(reinterpret_cast<uv_handle_t*>(uv()), &Stream::onCloseCb);
}

void Stream::onCloseCb(uv_handle_t* h) {
  auto* self = static_cast<Stream*>(h->data);
  // The one `delete this` for streams: after libuv is done with every handle.
  if (--self->open_handles_ == 0) delete self;
}

// ---- Transport filter (TLS) ----------------------------------------------------------
// The socket carries the filter's bytes, the handler sees decoded ones. Decoded bytes are
// delivered only while the handler reads: what it leaves (it stopped reading in the middle
// of a burst, or handed the stream to another handler) stays in the filter and is
// delivered by the idle handle on a later loop turn once reading resumes, even when the
// socket has nothing new to say.

int Stream::startFilter(std::unique_ptr<StreamFilter> filter, Buffer already_read) {
  if (filter_ != nullptr || closing_ || filter == nullptr) return UV_EINVAL;
  filter_ = std::make_unique<FilterState>();
  filter_->filter = std::move(filter);
  uv_idle_init(loop_.uv(), &filter_->idle);
  filter_->idle.data = this;
  ++open_handles_;
  if (!already_read.empty()) filter_->filter->input(std::move(already_read));
  // The first handshake step (a client's hello, or the answer to bytes already read) runs
  // on a later turn: no handler callback from inside this call.
  uv_idle_start(&filter_->idle, &Stream::onIdleCb);
  readStart();
  return 0;
}

StreamFilter* Stream::filter() const {
  return filter_ != nullptr ? filter_->filter.get() : nullptr;
}

bool Stream::tlsReady() const {
  return filter_ != nullptr && filter_->ready;
}

const std::string& Stream::tlsError() const {
  static const std::string kNone;
  if (filter_ == nullptr) return kNone;
  return filter_->error.empty() ? filter_->filter->error() : filter_->error;
}

bool Stream::filterReadStart() {
  FilterState& f = *filter_;
  if (f.read_done || (f.reported && !f.ready)) return false;  // nothing more will come
  if (!f.socket_eof && uv_read_start(uv(), &Stream::onAllocCb, &Stream::onReadCb) != 0)
    return false;
  if (f.filter->hasInput() || f.socket_eof) uv_idle_start(&f.idle, &Stream::onIdleCb);
  return true;
}

void Stream::onIdleCb(uv_idle_t* h) {
  auto* self = static_cast<Stream*>(h->data);
  uv_idle_stop(h);
  if (self->closing_ || self->handler_ == nullptr) return;
  self->filterPump();
}

void Stream::filterInput(Buffer wire) {
  filter_->filter->input(std::move(wire));
  if (handler_ != nullptr && !closing_) filterPump();
}

// `status`: UV_EOF or the read error.
void Stream::filterEof(int status) {
  FilterState& f = *filter_;
  if (status != UV_EOF) {  // the connection is broken: what is kept no longer matters
    if (!f.reported)
      return filterReport(status, std::string("read failed: ") + uv_strerror(status));
    return handler_->onStreamError(*this, status);
  }
  // libuv stopped reading; `reading_` stays as the handler wants it, so that what is kept
  // is delivered before the EOF.
  f.socket_eof = true;
  uv_read_stop(uv());
  filterPump();
}

void Stream::filterPump() {
  FilterState& f = *filter_;
  if (!f.ready) {
    if (f.reported) return;  // failed: nothing more is read
    StreamFilter::Progress p = f.filter->handshake();
    filterFlush();  // handshake messages, or the alert that ends a failed one
    if (p == StreamFilter::Progress::kFailed) return filterReport(UV_EPROTO, {});
    if (p == StreamFilter::Progress::kWant) {
      if (f.socket_eof) filterReport(UV_EOF, "connection closed during the handshake");
      return;
    }
    f.ready = true;
    if (!f.early.empty()) {
      std::string early = std::move(f.early);
      filterWrite(early.data(), early.size());
    }
    if (f.shutdown_pending) {
      f.filter->close();
      filterFlush();
      startShutdown();
    }
    filterReport(0, {});
    if (closing_ || handler_ == nullptr) return;
  }
  filterDeliver();
}

void Stream::filterDeliver() {
  FilterState& f = *filter_;
  while (reading_ && handler_ != nullptr && !closing_ && !f.read_done) {
    Buffer out = BufferPool::local().take();
    StreamFilter::ReadResult r = f.filter->read(out);
    filterFlush();  // e.g. a TLS 1.3 key update answered
    switch (r) {
      case StreamFilter::ReadResult::kData:
        handler_->onStreamData(*this, std::move(out));
        break;
      case StreamFilter::ReadResult::kNeedMore:
        if (!f.socket_eof) return;
        [[fallthrough]];  // EOF without a closing notice: still the end of the stream
      case StreamFilter::ReadResult::kClosed:
        f.read_done = true;
        uv_read_stop(uv());
        reading_ = false;
        handler_->onStreamEof(*this);
        return;
      case StreamFilter::ReadResult::kFailed:
        f.read_done = true;
        uv_read_stop(uv());
        reading_ = false;
        handler_->onStreamError(*this, UV_EPROTO);
        return;
    }
  }
}

// Reports the end of the handshake once. `why` explains a failure that is not the
// filter's own (EOF, a socket error); the filter's error() explains the rest.
void Stream::filterReport(int status, std::string why) {
  FilterState& f = *filter_;
  f.reported = true;
  if (status != 0) {
    f.error = std::move(why);
    uv_read_stop(uv());
    reading_ = false;
  }
  if (handler_ != nullptr && !closing_) handler_->onStreamTlsReady(*this, status);
}

void Stream::filterWrite(const char* p, size_t n, bool flush) {
  FilterState& f = *filter_;
  if (!f.ready) {
    // Kept until the handshake finishes (rare and small: handlers normally wait for
    // onStreamTlsReady), not counted as pending output.
    if (!f.reported) f.early.append(p, n);
    return;
  }
  // After FIN nothing more can go (a plain stream's uv_write fails the same way); a
  // failed layer encodes nothing. Either way the owner hears it, reading or not.
  if (shutdown_started_) return reportLater(UV_EPIPE);
  if (!f.filter->write(p, n)) return reportLater(UV_EPROTO);
  if (flush) filterFlush();
}

void Stream::filterFlush() {
  FilterState& f = *filter_;
  f.filter->takeOutput(f.out);
  std::erase_if(f.out, [](const Buffer& b) { return b.empty(); });
  if (f.out.empty() || closing_) {
    f.out.clear();
    return;
  }
  // One writev for everything the filter produced (records of a head and its body, or
  // many records of a large write): a syscall per record costs more than the crypto.
  size_t done = 0;
  if (writes_in_flight_ == 0 && !shutdown_started_ && f.out.size() > 1) {
    constexpr size_t kMaxBufs = 16;
    uv_buf_t bufs[kMaxBufs];
    size_t nbufs = std::min(f.out.size(), kMaxBufs);
    for (size_t i = 0; i < nbufs; ++i)
      bufs[i] = uv_buf_init(f.out[i].data(), static_cast<unsigned>(f.out[i].size()));
    int w = uv_try_write(uv(), bufs, static_cast<unsigned>(nbufs));
    done = w > 0 ? static_cast<size_t>(w) : 0;
    if (done > 0) wrote(done);
  }
  for (Buffer& b : f.out) {
    if (done >= b.size()) {
      done -= b.size();
      continue;
    }
    queueWrite(b.data() + done, b.size() - done, &b, nullptr);
    done = 0;
  }
  f.out.clear();
}

}  // namespace crescent::core
