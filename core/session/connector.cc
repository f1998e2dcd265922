#include "core/session/connector.h"

#include "core/backend/balancer.h"
#include "core/backend/source_binding.h"
#include "core/base/log.h"

namespace crescent::core {

Connector::Connector(EventLoop& loop, WorkerGeneration& wg, size_t backend_index, Owner& owner)
    : loop_(loop),
      wg_(wg),
      backend_(wg.gen().backend(backend_index)),
      owner_(owner),
      timer_(Timer::create(loop, &Connector::onTimer, this)) {}

Connector::~Connector() {
  // An abandoned attempt gives its slot back; a delivered connection's slot is the owner's.
  if (server_ != nullptr) server_->release();
}

void Connector::start(Server& acquired) {
  started_at_ = loop_.now();
  attempt(&acquired);
}

void Connector::attempt(Server* server) {
  server_ = server;
  ++attempts_;
  const Address& addr = server->config().address;
  const Stream::Kind kind = addr.isUnix() ? Stream::Kind::kPipe : Stream::Kind::kTcp;
  SourcePicker* picker = addr.isIp() ? server->source() : nullptr;
  // With `source`, a choice may be used up: its port taken (a port range), or every
  // ephemeral port of that address towards this server in use. bind()/connect() say so
  // at once (EADDRINUSE/EADDRNOTAVAIL), so try the next choice, at most 64 per attempt.
  size_t tries = picker != nullptr ? picker->choices() : 1;
  if (tries > 64) tries = 64;
  SourcePicker::Choice local;
  int rc = 0;
  size_t tried = 0;
  while (tried < tries) {
    ++tried;
    stream_ = Stream::create(loop_, kind);  // a socket left bound by a failed try is closed
    stream_->setHandler(this);
    if (picker != nullptr) {
      local = picker->next();
      rc = stream_->bindLocal(local.local, local.no_port);
    }
    if (rc == 0) rc = stream_->connect(addr);
    if (rc != UV_EADDRINUSE && rc != UV_EADDRNOTAVAIL) break;
  }
  if (rc != 0) {
    if (picker != nullptr) {
      logWarning(
          "backend \"{}\": server \"{}\": source {}: cannot connect: {} ({} source "
          "choice(s) tried)",
          backend_.config().name, server->name(), local.local.toString(), uv_strerror(rc), tried);
    }
    // Synchronous failure (e.g. no route): treat like a refused attempt, on a later turn
    // through a zero timer so the owner never sees a re-entrant callback.
    stream_.reset();
    timer_->start(0);
    return;
  }
  uint64_t t = backend_.config().timeout.connect;
  if (t > 0) timer_->start(t);
}

void Connector::onStreamConnected(Stream& s, int status) {
  if (status != 0) return retry(false);
  timer_->stop();
  StreamPtr out = std::move(stream_);
  out->setHandler(nullptr);
  out->setNoDelay(true);
  Server* srv = server_;
  srv->observe(true, "connected");
  server_ = nullptr;                         // the owner holds the slot now
  owner_.onConnected(std::move(out), *srv);  // may destroy us: last statement
}

void Connector::onTimer(void* ctx) {
  auto* self = static_cast<Connector*>(ctx);
  self->retry(self->stream_ != nullptr);
}

void Connector::retry(bool timed_out) {
  timer_->stop();
  stream_.reset();
  server_->countConnectError();
  server_->observe(false, timed_out ? "connect timeout" : "connection refused");
  const BackendConfig& cfg = backend_.config();
  if (attempts_ > cfg.retries) {
    logWarning("backend \"{}\": server \"{}\": connect {} after {} attempt(s)", cfg.name,
               server_->name(), timed_out ? "timed out" : "failed", attempts_);
    return fail(timed_out ? ConnectFailure::kTimeout : ConnectFailure::kError);
  }
  server_->countRetry();
  Server* next = server_;
  if (cfg.redispatch && attempts_ == cfg.retries) {
    // Last attempt: another server if there is one (HAProxy's redispatch).
    PickRequest req;
    req.exclude = server_;
    req.now_ms = monotonicMs();
    Server* other = backend_.balancer().pick(req);
    if (other != nullptr && other != server_ && other->tryAcquire()) {
      server_->release();
      next = other;
      next->countRedispatch();
    }
  }
  attempt(next);
}

void Connector::fail(ConnectFailure why) {
  Server* last = server_;
  if (server_ != nullptr) {
    server_->release();
    server_ = nullptr;
  }
  owner_.onConnectFailed(why, last);  // may destroy us: last statement
}

}  // namespace crescent::core
