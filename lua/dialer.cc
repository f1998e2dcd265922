#include "lua/dialer.h"

#include "lua/socket_binding.h"

namespace crescent::lua {

struct Dialer::Lookup {
  uv_getaddrinfo_t req{};
  Dialer* dialer;  // null once the dialer went away: the callback only frees
  static void onDone(uv_getaddrinfo_t* r, int status, addrinfo* res) {
    auto* l = static_cast<Lookup*>(r->data);
    Dialer* d = l->dialer;
    core::Address a;
    if (status == 0 && res != nullptr) {
      // IPv4 first when the name has both (the common loopback case; no happy eyeballs).
      addrinfo* pick = res;
      for (addrinfo* i = res; i != nullptr; i = i->ai_next) {
        if (i->ai_family == AF_INET) {
          pick = i;
          break;
        }
      }
      a = core::Address::fromSockaddr(pick->ai_addr, static_cast<socklen_t>(pick->ai_addrlen));
    }
    if (res != nullptr) uv_freeaddrinfo(res);
    delete l;
    if (d == nullptr) return;
    d->lookup_ = nullptr;
    if (status != 0 || !a.isIp()) {
      return d->finish(nullptr, false,
                       "no address for " + d->target_.host + ": " +
                           (status != 0 ? uv_strerror(status) : "none usable"));
    }
    a.setPort(static_cast<uint16_t>(d->target_.port));
    d->connectTo(a);
  }
};

Dialer::Dialer(CoroutineHost& host, Owner& owner) : host_(host), owner_(owner) {}

Dialer::~Dialer() {
  if (lookup_ != nullptr) {
    lookup_->dialer = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&lookup_->req));
  }
}

void Dialer::start(const DialTarget& target, uint64_t timeout_ms) {
  in_start_ = true;
  startSteps(target, timeout_ms);
  in_start_ = false;
}

void Dialer::startSteps(const DialTarget& target, uint64_t timeout_ms) {
  target_ = target;
  core::EventLoop& loop = *host_.loop;
  if (timeout_ms > 0) {
    timer_ = core::Timer::create(loop, &Dialer::onTimer, this);
    timer_->start(timeout_ms);
  }
  if (core::StreamPtr idle = host_.sockets->take(target_.key)) {
    return finish(std::move(idle), true, {});
  }
  if (!target_.unix_path.empty()) {
    auto a = core::Address::parse("unix:" + target_.unix_path);
    if (!a.ok()) return finish(nullptr, false, a.message());
    return connectTo(*a);
  }
  std::string literal =
      target_.host.find(':') != std::string::npos ? "[" + target_.host + "]" : target_.host;
  auto ip = core::Address::parse(literal + ":" + std::to_string(target_.port));
  if (ip.ok() && ip->isIp()) return connectTo(*ip);
  lookup_ = new Lookup();
  lookup_->dialer = this;
  lookup_->req.data = lookup_;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop.uv(), &lookup_->req, &Lookup::onDone, target_.host.c_str(), nullptr,
                          &hints);
  if (rc != 0) {
    delete lookup_;
    lookup_ = nullptr;
    finish(nullptr, false, "no address for " + target_.host + ": " + uv_strerror(rc));
  }
}

void Dialer::connectTo(const core::Address& a) {
  stream_ = core::Stream::create(*host_.loop,
                                 a.isUnix() ? core::Stream::Kind::kPipe : core::Stream::Kind::kTcp);
  stream_->setHandler(this);
  int rc = a.unixPath().size() > 0 && a.unixPath()[0] == '@' ? stream_->connectNow(a)
                                                             : stream_->connect(a);
  if (rc != 0) {
    stream_.reset();
    return finish(nullptr, false, uv_strerror(rc));
  }
  if (a.isUnix() && a.unixPath()[0] == '@') {
    core::StreamPtr s = std::move(stream_);
    s->setHandler(nullptr);
    finish(std::move(s), false, {});
  }
}

void Dialer::onStreamConnected(core::Stream&, int status) {
  if (status != 0) {
    stream_.reset();
    return finish(nullptr, false,
                  status == UV_ECONNREFUSED ? "connection refused" : uv_strerror(status));
  }
  core::StreamPtr s = std::move(stream_);
  s->setHandler(nullptr);
  s->setNoDelay(true);
  finish(std::move(s), false, {});
}

void Dialer::onStreamError(core::Stream&, int err) {
  stream_.reset();
  finish(nullptr, false, uv_strerror(err));
}

void Dialer::onTimer(void* ctx) {
  auto* d = static_cast<Dialer*>(ctx);
  d->stream_.reset();
  if (d->lookup_ != nullptr) {
    d->lookup_->dialer = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&d->lookup_->req));
    d->lookup_ = nullptr;
  }
  d->finish(nullptr, false, "timeout");
}

// Reports once. A result known inside start() waits for the next loop turn (a timer of 0).
void Dialer::finish(core::StreamPtr s, bool reused, std::string error) {
  if (done_) return;
  done_ = true;
  if (timer_) timer_->stop();
  if (!in_start_) return owner_.onDialed(std::move(s), reused, error);  // may destroy us: last
  ready_ = std::move(s);
  ready_reused_ = reused;
  ready_error_ = std::move(error);
  soon_ = core::Timer::create(*host_.loop, &Dialer::onNextTurn, this);
  soon_->start(0);
}

void Dialer::onNextTurn(void* ctx) {
  auto* d = static_cast<Dialer*>(ctx);
  std::string error = std::move(d->ready_error_);
  d->owner_.onDialed(std::move(d->ready_), d->ready_reused_, error);  // may destroy d: last
}

}  // namespace crescent::lua
