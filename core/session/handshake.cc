#include "core/session/handshake.h"

#include <uv.h>

#include "core/base/log.h"
#include "core/session/http1_connection.h"
#include "core/session/tcp_session.h"
#include "core/tls/tls_stream.h"

namespace crescent::core {

void startFrontendSession(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg,
                          size_t frontend_index, StreamPtr client, ConnectionInfo info) {
  const FrontendConfig& fe = wg->config().frontends[frontend_index];
  if (fe.mode == Mode::kTcp) {
    auto* s = new TcpSession(w, std::move(wg), frontend_index, std::move(client));
    w.addSession(s);
    s->start(std::move(info));
  } else {
    auto* s = new Http1Connection(w, std::move(wg), frontend_index, std::move(client));
    w.addSession(s);
    s->start(std::move(info));
  }
}

void startSession(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t frontend_index,
                  size_t bind_index, StreamPtr client) {
  const FrontendConfig& fe = wg->config().frontends[frontend_index];
  const BindConfig& bind = fe.binds[bind_index];
  bool inspect = fe.tcp_request_hook > 0 && wg->scripts() != nullptr;
  if (bind.accept_proxy || bind.tls.enabled() || inspect) {
    auto* h = new Handshake(w, std::move(wg), frontend_index, bind_index, std::move(client));
    w.addSession(h);
    h->start();
    return;
  }
  ConnectionInfo info;
  info.src = client->peerAddress();
  info.dst = client->localAddress();
  startFrontendSession(w, std::move(wg), frontend_index, std::move(client), std::move(info));
}

Handshake::Handshake(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t frontend_index,
                     size_t bind_index, StreamPtr client)
    : w_(w),
      wg_(std::move(wg)),
      fe_index_(frontend_index),
      bind_index_(bind_index),
      client_(std::move(client)),
      timer_(Timer::create(w.loop(), &Handshake::onTimer, this)) {}

Handshake::~Handshake() {
  txn_.reset();  // before ctx_, which it borrows
}

void Handshake::start() {
  peer_ = client_->peerAddress();
  const Timeouts& t = wg_->config().frontends[fe_index_].timeout;
  uint64_t ms = t.handshake > 0 ? t.handshake : t.client;
  if (ms > 0) timer_->start(ms);
  client_->setHandler(this);
  if (!wg_->config().frontends[fe_index_].binds[bind_index_].accept_proxy)
    return proxyDone(Buffer());  // TLS only
  client_->readStart();
}

void Handshake::onStreamData(Stream&, Buffer data) {
  if (done_ || in_tls_) return;  // with TLS, nothing is delivered before onStreamTlsReady
  if (inspecting_) {
    size_t room =
        wg_->config().global.bufsize - std::min(peeked_.size(), wg_->config().global.bufsize);
    peeked_.append(data.view().substr(0, room));
    if (peeked_.size() >= wg_->config().global.bufsize) client_->readStop();  // a buffer's worth
    return wakePeek();
  }
  size_t n = parser_.feed(data.data(), data.size());
  switch (parser_.state()) {
    case proxy::Parser::State::kNeedMore:
      return;
    case proxy::Parser::State::kError:
      return fail(parser_.error());
    case proxy::Parser::State::kDone:
      data.consume(n);
      return proxyDone(std::move(data));
  }
}

void Handshake::onStreamEof(Stream&) {
  if (inspecting_) {
    peer_ended_ = true;
    return wakePeek();
  }
  fail(parser_.consumed() > 0 ? "connection closed in the middle of the PROXY header"
                              : "connection closed before a PROXY header");
}

void Handshake::onStreamError(Stream&, int err) {
  if (inspecting_) {
    peer_ended_ = true;
    return wakePeek();
  }
  fail(std::string("connection error before the PROXY header completed: ") + uv_strerror(err));
}

void Handshake::onTimer(void* ctx) {
  auto* self = static_cast<Handshake*>(ctx);
  if (self->inspecting_) return self->fail("tcp_request hook still running after timeout client");
  if (self->in_tls_) return self->fail("timeout during the TLS handshake");
  self->fail(self->parser_.consumed() > 0 ? "timeout in the middle of the PROXY header"
                                          : "timeout waiting for the PROXY header");
}

uint64_t Handshake::generationId() const {
  return wg_->gen().id();
}

std::string Handshake::describe() const {
  return fmt::format("proto=handshake gen={} fe={} src={} state={}", wg_->gen().id(),
                     wg_->config().frontends[fe_index_].name, peer_.toString(),
                     in_tls_ ? "tls" : "proxy");
}

void Handshake::abort() {
  if (done_) return;
  done_ = true;
  txn_.reset();
  client_.reset();
  w_.endSession(this);
}

void Handshake::fail(const std::string& why) {
  if (done_) return;
  done_ = true;
  const FrontendConfig& fe = wg_->config().frontends[fe_index_];
  logWarning("frontend \"{}\": bind {}: {} (from {}); connection closed", fe.name,
             fe.binds[bind_index_].text, why, peer_.toString());
  timer_->stop();
  txn_.reset();
  client_.reset();
  w_.endSession(this);
}

// The PROXY header is complete, or none is expected: record the addresses, then TLS (when
// the bind has it) or the session.
void Handshake::proxyDone(Buffer rest) {
  if (wg_->config().frontends[fe_index_].binds[bind_index_].accept_proxy) {
    const proxy::Header& h = parser_.header();
    if (h.has_addresses) {
      info_.src = h.src;
      info_.dst = h.dst;
    } else {  // LOCAL / UNKNOWN: the real endpoints
      info_.src = peer_;
      info_.dst = client_->localAddress();
    }
    info_.proxy = std::make_shared<const proxy::Header>(h);
  } else {
    info_.src = peer_;
    info_.dst = client_->localAddress();
  }
  const FrontendConfig& fe = wg_->config().frontends[fe_index_];
  if (fe.tcp_request_hook > 0 && wg_->scripts() != nullptr) return startInspect(std::move(rest));
  startTls(std::move(rest));
}

// TLS termination when the bind has it, else the session.
void Handshake::startTls(Buffer rest) {
  const tls::ServerContext* tls = wg_->gen().bindTls(fe_index_, bind_index_);
  if (tls == nullptr) {
    if (wg_->config().frontends[fe_index_].binds[bind_index_].tls.enabled())
      return fail("no TLS context for this bind");  // never plaintext on a TLS bind
    return handOff(std::move(rest));
  }
  // TLS termination (DESIGN §4): the bytes that came after the header are the start of
  // the ClientHello. onStreamTlsReady continues.
  in_tls_ = true;
  if (int rc = tls::startTls(*client_, *tls, std::move(rest)); rc != 0)
    fail(std::string("cannot start TLS: ") + uv_strerror(rc));
}

void Handshake::onStreamTlsReady(Stream& s, int status) {
  if (done_) return;
  if (status != 0) return fail("TLS handshake failed: " + s.tlsError());
  if (const tls::Info* i = tls::tlsInfo(s)) {
    // A copy for the session (Lua's txn.tls, the next hop's PROXY v2 TLVs): it then needs
    // no access to the stream's filter.
    info_.tls = std::make_shared<const tls::Info>(*i);
    const FrontendConfig& fe = wg_->config().frontends[fe_index_];
    logInfo("frontend \"{}\": bind {}: TLS from {}: {} {}, sni \"{}\", alpn \"{}\", {}", fe.name,
            fe.binds[bind_index_].text, info_.src.toString(), i->version, i->cipher, i->sni,
            i->alpn, i->resumed ? "resumed" : "new session");
  }
  handOff(Buffer());  // the session reads plaintext from the same stream
}

// ---------------------------------------------------------------- tcp_request

uint64_t Handshake::inspectDelayMs() const {
  return wg_->config().frontends[fe_index_].inspect_delay;
}

void Handshake::wakePeek() {
  PeekWaiter* w = peek_waiter_;
  peek_waiter_ = nullptr;
  if (w != nullptr) w->onPeekMore();
}

void Handshake::startInspect(Buffer rest) {
  const FrontendConfig& fe = wg_->config().frontends[fe_index_];
  inspecting_ = true;
  peeked_.assign(rest.view());
  timer_->stop();
  if (fe.timeout.client > 0) timer_->start(fe.timeout.client);
  ctx_ = std::make_unique<RequestContext>(
      RequestContext{no_request_, info_.src, info_.dst, fe.name, fe.mode == Mode::kHttp});
  ctx_->proxy = info_.proxy.get();
  txn_ = wg_->scripts()->newTxn(*ctx_);
  client_->readStart();
  if (txn_->tcpRequest(fe.tcp_request_hook, *this, decision_, *this) == ScriptStatus::kPending)
    return;  // onScriptDone
  onScriptDone();
}

void Handshake::onScriptDone() {
  if (done_) return;
  inspecting_ = false;
  peek_waiter_ = nullptr;
  client_->readStop();
  const FrontendConfig& fe = wg_->config().frontends[fe_index_];
  switch (decision_.kind) {
    case ConnDecision::Kind::kFail:
      logError("frontend \"{}\": tcp_request hook failed: {}", fe.name, decision_.error);
      return fail("tcp_request hook failed");
    case ConnDecision::Kind::kReject:
      logInfo("frontend \"{}\": tcp_request rejected the connection from {}", fe.name,
              info_.src.toString());
      done_ = true;
      timer_->stop();
      txn_.reset();
      client_.reset();
      return w_.endSession(this);
    case ConnDecision::Kind::kUseBackend:
      info_.backend = decision_.backend;
      break;
    case ConnDecision::Kind::kContinue:
      break;
  }
  if (peer_ended_ && peeked_.empty()) return fail("connection closed during tcp_request");
  // In TCP mode the session keeps the txn (txn.ctx for its balancer and log phases).
  if (fe.mode == Mode::kTcp) info_.txn = std::move(txn_);
  txn_.reset();
  Buffer rest;
  if (!peeked_.empty()) {
    rest = BufferPool::local().take();
    rest.append(peeked_);
    peeked_.clear();
  }
  timer_->stop();
  const Timeouts& t = fe.timeout;
  uint64_t ms = t.handshake > 0 ? t.handshake : t.client;
  if (ms > 0) timer_->start(ms);  // the TLS handshake, if any, has its own time
  startTls(std::move(rest));
}

void Handshake::handOff(Buffer rest) {
  done_ = true;
  timer_->stop();
  ConnectionInfo info = std::move(info_);
  if (!rest.empty()) info.early = std::move(rest);
  client_->readStop();
  client_->setHandler(nullptr);
  startFrontendSession(w_, wg_, fe_index_, std::move(client_), std::move(info));
  w_.endSession(this);
}

}  // namespace crescent::core
