#include "core/session/connector.h"

#include <algorithm>

#include "core/backend/balancer.h"
#include "core/backend/source_binding.h"
#include "core/base/log.h"
#include "core/tls/tls_stream.h"

#include <fmt/format.h>

namespace crescent::core {
namespace {

constexpr uint64_t kRetryPauseMs = 1000;  // at most, between two tries of one server

}  // namespace

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
  const Address addr = server->address();
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
    if (rc == 0) {
      bool abstract = addr.isUnix() && addr.unixPath().rfind('@', 0) == 0;
      if (abstract) {
        rc = stream_->connectNow(addr);
        if (rc == 0) {  // reported on a later turn, like every connect
          connected_now_ = true;
          timer_->start(0);
          return;
        }
      } else {
        rc = stream_->connect(addr);
      }
    }
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
  stream_->setNoDelay(true);
  if (server_->config().send_proxy != 0) writeProxyHeader(*stream_, *server_);
  // TLS to the server: after the PROXY header (which goes out in clear), before the
  // hand-over; `timeout connect` keeps running over the handshake, and a failed handshake
  // is a failed attempt (retried, then 503). onStreamTlsReady continues.
  if (const tls::ClientContext* tls = wg_.gen().serverTls(backend_.index(), server_->index())) {
    if (int rc = tls::startTls(*stream_, *tls); rc != 0) {
      logWarning("backend \"{}\": server \"{}\": cannot start TLS: {}", backend_.name(),
                 server_->name(), uv_strerror(rc));
      return retry(false, "TLS handshake failed");
    }
    return;
  }
  handOver();
}

void Connector::onStreamTlsReady(Stream& s, int status) {
  if (status != 0) {
    logWarning("backend \"{}\": server \"{}\": TLS handshake failed: {}", backend_.name(),
               server_->name(), s.tlsError());
    return retry(false, "TLS handshake failed");
  }
  if (const tls::Info* i = tls::tlsInfo(s))
    logDebug("backend \"{}\": server \"{}\": TLS: {} {}, alpn \"{}\", {}", backend_.name(),
             server_->name(), i->version, i->cipher, i->alpn,
             i->resumed ? "resumed" : "new session");
  handOver();
}

void Connector::handOver() {
  timer_->stop();
  StreamPtr out = std::move(stream_);
  // With TLS the stream was reading for the handshake: stopped, so that the owner's
  // readStart() also delivers what came meanwhile.
  out->readStop();
  out->setHandler(nullptr);
  Server* srv = server_;
  srv->observe(true, "connected");
  server_ = nullptr;                         // the owner holds the slot now
  owner_.onConnected(std::move(out), *srv);  // may destroy us: last statement
}

proxy::V2Options proxyV2Options(unsigned options, const proxy::Header* received,
                                const tls::Info* tls) {
  proxy::V2Options o;
  o.crc32c = (options & kProxyV2Crc32c) != 0;
  if ((options & kProxyV2Authority) != 0) {
    if (auto a = received != nullptr ? received->authority() : std::nullopt)
      o.authority = std::string(*a);
    else if (tls != nullptr)
      o.authority = tls->sni;  // empty (left out) when the client sent no SNI
  }
  if ((options & kProxyV2Alpn) != 0) {
    if (auto a = received != nullptr ? received->alpn() : std::nullopt)
      o.alpn = std::string(*a);
    else if (tls != nullptr)
      o.alpn = tls->alpn;
  }
  if ((options & kProxyV2UniqueId) != 0 && received != nullptr)
    if (auto u = received->uniqueId()) o.unique_id = std::string(*u);
  if ((options & kProxyV2Ssl) != 0) {
    auto ssl = received != nullptr ? received->ssl() : std::nullopt;
    if (ssl && (ssl->client & proxy::kClientSsl) != 0) {  // the hop before us had TLS
      o.ssl = true;
      o.ssl_client = ssl->client;
      o.ssl_verify = ssl->verify;
      o.ssl_version = ssl->version;
      o.ssl_cn = ssl->cn;
      o.ssl_cipher = ssl->cipher;
    } else if (tls != nullptr) {  // crescent terminated the client's TLS
      o.ssl = true;
      o.ssl_version = tls->version;
      o.ssl_cipher = tls->cipher;
      if (tls->client) {  // as HAProxy: SESS when the session has one, CONN when sent now
        o.ssl_client |= proxy::kClientCertSess;
        if (!tls->resumed) o.ssl_client |= proxy::kClientCertConn;
        o.ssl_verify = tls->client->verified
                           ? 0
                           : static_cast<uint32_t>(std::max(1L, tls->client->verify_code));
        o.ssl_cn = tls->client->cn;
      }
    }
  }
  return o;
}

// `send_proxy`: the PROXY header goes first on the new connection (before any request
// byte, and before TLS when the server uses it), describing the client (DESIGN §7).
void Connector::writeProxyHeader(Stream& out, Server& srv) {
  const ServerConfig& sc = srv.config();
  Address local_src, local_dst;
  const Address* src = origin_src_;
  const Address* dst = origin_dst_;
  if (src == nullptr || dst == nullptr) {
    local_src = out.localAddress();
    local_dst = out.peerAddress();
    src = &local_src;
    dst = &local_dst;
  }
  if (sc.send_proxy == 1) {
    out.write(proxy::encodeV1(*src, *dst));
    return;
  }
  proxy::V2Options o = proxyV2Options(sc.proxy_v2_options, origin_proxy_, origin_tls_);
  if ((sc.proxy_v2_options & kProxyV2UniqueId) != 0 && o.unique_id.empty())
    o.unique_id =
        fmt::format("{:016x}", hashKey(src->toString() + "|" + std::to_string(monotonicMs())) ^
                                   static_cast<uint64_t>(started_at_));
  auto h = proxy::encodeV2(proxy::Command::kProxy, src, dst, o);
  if (!h.ok()) {
    logWarning("backend \"{}\": server \"{}\": PROXY v2 header: {}", backend_.name(), srv.name(),
               h.message());
    h = proxy::encodeV2(proxy::Command::kProxy, src, dst, proxy::V2Options());
  }
  if (h.ok()) out.write(std::move(*h));
}

void Connector::onTimer(void* ctx) {
  auto* self = static_cast<Connector*>(ctx);
  if (self->turnaround_ != nullptr) {  // the pause before another try of the same server
    Server* next = self->turnaround_;
    self->turnaround_ = nullptr;
    return self->attempt(next);
  }
  if (self->connected_now_) {
    self->connected_now_ = false;
    return self->onStreamConnected(*self->stream_, 0);
  }
  self->retry(self->stream_ != nullptr);
}

void Connector::retry(bool timed_out, const char* why) {
  timer_->stop();
  stream_.reset();
  server_->countConnectError();
  server_->observe(false, why != nullptr ? why
                          : timed_out    ? "connect timeout"
                                         : "connection refused");
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
  if (next != server_) return attempt(next);  // redispatched: no pause
  // HAProxy's turn-around: the same server again only after min(timeout connect, 1 s),
  // so that a server that refuses is not hammered and a transient fault can pass.
  uint64_t pause =
      std::min<uint64_t>(cfg.timeout.connect > 0 ? cfg.timeout.connect : 1000, kRetryPauseMs);
  turnaround_ = next;
  timer_->start(pause);
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
