#include "core/session/tcp_session.h"

#include <fmt/format.h>

#include "core/base/log.h"
#include "core/session/routing.h"
#include "core/session/traffic_log.h"

namespace crescent::core {

TcpSession::TcpSession(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t fe_index,
                       StreamPtr client)
    : w_(w),
      wg_(std::move(wg)),
      fe_(wg_->config().frontends[fe_index]),
      fe_index_(fe_index),
      client_(std::move(client)),
      ctx_{no_request_, src_, dst_, fe_.name} {
  ctx_.http = false;
  wg_->gen().frontendStats(fe_index_).cur.fetch_add(1, std::memory_order_relaxed);
  wg_->gen().frontendStats(fe_index_).total.fetch_add(1, std::memory_order_relaxed);
  wg_->gen().sessionIn();
}

uint64_t TcpSession::generationId() const {
  return wg_->gen().id();
}

std::string TcpSession::describe() const {
  const char* state = tunnel_ ? "tunnel" : (dispatch_ ? "queue" : "connect");
  return fmt::format("proto=tcp gen={} fe={} src={} age={}ms state={}{}", wg_->gen().id(), fe_.name,
                     src_.toString(), w_.loop().now() - accept_ms_, state,
                     srv_log_ != nullptr
                         ? fmt::format(" srv={}/{}", srv_log_->backend().name(), srv_log_->name())
                         : std::string());
}

TcpSession::~TcpSession() {
  tunnel_.reset();
  connector_.reset();
  dispatch_.reset();
  txn_.reset();
  if (srv_ != nullptr) srv_->release();
  if (backend_ >= 0) wg_->gen().backend(backend_).release();
}

void TcpSession::start(ConnectionInfo info) {
  accept_ms_ = w_.loop().now();
  accept_wall_ = wallClockMs();
  src_ = std::move(info.src);
  dst_ = std::move(info.dst);
  proxy_ = std::move(info.proxy);
  tls_ = std::move(info.tls);
  if (!info.early.empty()) early_ = std::move(info.early);
  ctx_.proxy = proxy_.get();
  ctx_.tls = tls_.get();
  if (info.txn) {
    txn_ = std::move(info.txn);  // the tcp_request hook's: its txn.ctx goes on
    txn_->rebind(ctx_);
  }
  if (!info.backend.empty()) {
    backend_ = wg_->config().findBackend(info.backend);
  } else {
    AclSample sample;
    sample.src = &src_;
    sample.dst = &dst_;
    backend_ = selectBackend(fe_, sample);
  }
  if (backend_ < 0) return finish("SC");
  wg_->gen().backend(backend_).acquire();
  dispatch_ = std::make_unique<ServerDispatch>(w_.loop(), wg_, backend_,
                                               static_cast<ServerDispatch::Owner&>(*this));
  PickRequest pr;
  pr.src = &src_;
  pr.now_ms = monotonicMs();
  const BackendConfig& be = wg_->config().backends[backend_];
  bool wants_txn = be.lua_balancer.enabled() || fe_.log_hook > 0;
  if (!txn_ && wants_txn && wg_->scripts() != nullptr) txn_ = wg_->scripts()->newTxn(ctx_);
  dispatched(dispatch_->start(txn_.get(), pr));
}

void TcpSession::onDispatched(ServerDispatch::Outcome o) {
  dispatched(o);
}

void TcpSession::dispatched(ServerDispatch::Outcome o) {
  switch (o) {
    case ServerDispatch::Outcome::kAssigned:
      return connect(*dispatch_->server());
    case ServerDispatch::Outcome::kPending:
      if (early_.empty()) {  // a Lua pick waits: watch for a disconnect meanwhile
        client_->setHandler(this);
        client_->readStart();
      }
      return;
    case ServerDispatch::Outcome::kQueued:
      if (early_.empty()) {  // watch for a disconnect (and keep the first bytes)
        client_->setHandler(this);
        client_->readStart();
      }
      return;
    case ServerDispatch::Outcome::kNoServer:
      logWarning("backend \"{}\": no server available", wg_->config().backends[backend_].name);
      return finish("SC");
    case ServerDispatch::Outcome::kQueueFull:
      logWarning("backend \"{}\": queue full (maxqueue)", wg_->config().backends[backend_].name);
      return finish("sQ");
  }
}

void TcpSession::onQueueGranted(Server& server) {
  connect(server);
}

void TcpSession::onQueueTimeout() {
  logWarning("backend \"{}\": timeout queue after {} ms", wg_->config().backends[backend_].name,
             dispatch_->queueMs());
  finish("sQ");
}

void TcpSession::onStreamData(Stream&, Buffer data) {
  // Keep the first bytes for the server; the rest waits in the kernel until connected
  // (so a disconnect after them is only seen then).
  early_ = std::move(data);
  client_->readStop();
}

void TcpSession::onStreamEof(Stream&) {
  finish("CQ");
}

void TcpSession::onStreamError(Stream&, int) {
  finish("CQ");
}

void TcpSession::connect(Server& server) {
  client_->readStop();  // it watched for a disconnect while queued or picking
  client_->setHandler(nullptr);
  connector_ =
      std::make_unique<Connector>(w_.loop(), *wg_, backend_, static_cast<Connector::Owner&>(*this));
  connector_->setOrigin(&src_, &dst_, proxy_.get(), tls_.get());
  connector_->start(server);
}

void TcpSession::onConnected(StreamPtr stream, Server& server) {
  connected_ms_ = w_.loop().now();
  srv_ = &server;
  server_ = std::move(stream);
  const BackendConfig& be = wg_->config().backends[backend_];
  TunnelTimeouts t = TunnelTimeouts::from(fe_.timeout, be.timeout);
  tunnel_ = std::make_unique<Tunnel>(w_.loop(), *client_, *server_, t,
                                     static_cast<Tunnel::Owner&>(*this));
  tunnel_->start(std::move(early_), Buffer());
}

void TcpSession::onConnectFailed(ConnectFailure why, Server* last) {
  srv_log_ = last;
  finish(why == ConnectFailure::kTimeout ? "sC" : "SC");
}

void TcpSession::onTunnelEnd(TunnelEnd why) {
  switch (why) {
    case TunnelEnd::kClosed:
      return finish("--");
    case TunnelEnd::kClientAbort:
      return finish("CD");
    case TunnelEnd::kServerAbort:
      return finish("SD");
    case TunnelEnd::kClientTimeout:
      return finish("cD");
    case TunnelEnd::kServerTimeout:
      return finish("sD");
  }
}

void TcpSession::abort() {
  finish("KD");
}

// One tcplog line, or what the log phase makes of it.
void TcpSession::writeLog(const char* state) {
  uint64_t now = w_.loop().now();
  std::string be = backend_ >= 0 ? wg_->config().backends[backend_].name : fe_.name;
  const Server* named = srv_ != nullptr ? srv_ : srv_log_;
  std::string sv = named != nullptr ? named->name() : "<NOSRV>";
  int64_t tw = dispatch_ ? static_cast<int64_t>(dispatch_->queueMs()) : (backend_ >= 0 ? 0 : -1);
  int64_t tc = connected_ms_ ? static_cast<int64_t>(connected_ms_ - accept_ms_) : -1;
  uint64_t bytes = client_ ? client_->bytesOut() : 0;
  int retries = connector_ ? connector_->retries() : 0;
  std::string line = fmt::format(
      "{}:{} [{}] {} {}/{} {}/{}/{} {} {} {}/{}/{}/{}/{} {}/{}", src_.ip(), src_.port(),
      formatLogDate(accept_wall_), fe_.name, be, sv, tw, tc, now - accept_ms_, bytes, state,
      w_.counters().actconn.load(), wg_->gen().frontendStats(fe_index_).cur.load(),
      backend_ >= 0 ? wg_->gen().backend(backend_).current() : 0,
      srv_ != nullptr ? srv_->current() : 0, retries, named != nullptr ? named->queued() : 0,
      backend_ >= 0 ? wg_->gen().backend(backend_).queued() : 0);
  if (fe_.log_hook > 0 && txn_) {
    LogInfo info;
    info.http = false;
    info.line = line;
    info.backend = be;
    info.server = sv;
    info.tw = tw;
    info.tc = tc;
    info.ta = static_cast<int64_t>(now - accept_ms_);
    info.bytes_out = bytes;
    info.bytes_in = client_ ? client_->bytesIn() : 0;
    info.termination = state;
    info.retries = retries;
    LogDecision d;
    txn_->log(fe_.log_hook, info, d);
    if (!d.error.empty()) logError("frontend \"{}\": log hook failed: {}", fe_.name, d.error);
    if (d.kind == LogDecision::Kind::kSuppress) return;
    if (d.kind == LogDecision::Kind::kReplace) return logTraffic(d.line);
  }
  logTraffic(line);
}

// Gives the server slot back, after telling a Lua balancer's on_release.
void TcpSession::releaseSlot() {
  dispatch_.reset();
  if (srv_ == nullptr) return;
  Server* s = srv_;
  srv_ = nullptr;
  const LuaBalancerConfig& lb = s->backend().config().lua_balancer;
  if (lb.release_hook > 0 && wg_->scripts() != nullptr) {
    uint64_t now = w_.loop().now();
    wg_->scripts()->runBalancerRelease(lb, s->backend(), *s, now - accept_ms_, 0, false);
  }
  s->release();
}

void TcpSession::finish(const char* state) {
  if (done_) return;
  done_ = true;
  if (fe_.log) writeLog(state);
  // Closing the streams disarms every callback; the tunnel and connector die with us on a
  // later loop turn (never inside their own callbacks).
  client_.reset();
  server_.reset();
  releaseSlot();
  // Before endSession(): it may accept a connection that waited for this slot.
  wg_->gen().frontendStats(fe_index_).cur.fetch_sub(1, std::memory_order_relaxed);
  wg_->gen().sessionOut();
  w_.endSession(this);
}

}  // namespace crescent::core
