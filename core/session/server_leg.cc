// ServerLeg, choosing and connecting: the dispatch (balancer, queue), the idle pool or a
// Connector, the request head and body towards the server, and the slot's release.
#include "core/session/server_leg.h"

#include <fmt/format.h>

#include "core/backend/connection_pool.h"
#include "core/base/log.h"

namespace crescent::core {

ServerLeg::ServerLeg(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t backend_index,
                     Owner& owner, Origin origin)
    : w_(w),
      wg_(std::move(wg)),
      backend_(backend_index),
      owner_(owner),
      origin_(origin),
      parser_(wg_->config().global.bufsize, wg_->config().global.max_headers) {}

ServerLeg::~ServerLeg() {
  for (Alive* a = alive_; a != nullptr; a = a->prev_) a->gone_ = true;
  dispatch_.reset();
  connector_.reset();
  if (stream_) {
    // A connection that began with a PROXY header speaks for one client: never shared.
    if (reusable()) {
      stream_->readStop();
      stream_->setHandler(nullptr);
      const BackendConfig& be = wg_->config().backends[backend_];
      uint64_t idle = be.pool_idle_timeout;
      if (server_idle_ms_ > 0 && server_idle_ms_ < idle) idle = server_idle_ms_;
      w_.pool().give(srv_->poolKey(), std::move(stream_), idle,
                     static_cast<size_t>(be.pool_max_idle));
    } else {
      stream_.reset();
    }
  }
  releaseSlot();
}

bool ServerLeg::reusable() const {
  return stream_ && srv_ != nullptr && !failed_ && resp_done_ && req_sent_ && keep_ &&
         srv_->config().send_proxy == 0 && held_.empty() && stream_->pendingBytes() == 0 &&
         !stream_->closing();
}

const char* ServerLeg::stateName() const {
  if (stream_) return "exchange";
  return queued() ? "queue" : "connect";
}

uint64_t ServerLeg::lastActivity() const {
  return stream_ ? stream_->lastActivity() : 0;
}

void ServerLeg::start(const HttpHead& req, BodyLength body, bool upgrade, bool forwardfor,
                      bool may_reuse, ScriptTxn* txn) {
  may_reuse_ = may_reuse;
  req_ = &req;
  req_body_ = body;
  upgrade_ = upgrade;
  forwardfor_ = forwardfor;
  t_connect_start_ = w_.loop().now();
  dispatch_ = std::make_unique<ServerDispatch>(w_.loop(), wg_, backend_,
                                               static_cast<ServerDispatch::Owner&>(*this));
  PickRequest pr;
  pr.src = origin_.src;
  std::string_view target = req.target;
  size_t q = target.find('?');
  pr.path = target.substr(0, q);
  if (q != std::string_view::npos) pr.query = target.substr(q + 1);
  pr.head = &req;
  pr.now_ms = monotonicMs();
  dispatched(dispatch_->start(txn, pr));
}

void ServerLeg::onDispatched(ServerDispatch::Outcome o) {
  dispatched(o);
}

void ServerLeg::dispatched(ServerDispatch::Outcome o) {
  const std::string& name = wg_->config().backends[backend_].name;
  switch (o) {
    case ServerDispatch::Outcome::kPending:
    case ServerDispatch::Outcome::kQueued:
      return;  // onDispatched / onQueueGranted / onQueueTimeout
    case ServerDispatch::Outcome::kAssigned:
      return useServer(*dispatch_->server());
    case ServerDispatch::Outcome::kNoServer:
      logWarning("backend \"{}\": 503: no server available", name);
      return fail(503, "SC");
    case ServerDispatch::Outcome::kQueueFull:
      logWarning("backend \"{}\": 503: queue full (maxqueue)", name);
      return fail(503, "sQ");
  }
}

void ServerLeg::onQueueGranted(Server& server) {
  t_queue_ = dispatch_->queueMs();
  useServer(server);
}

void ServerLeg::onQueueTimeout() {
  t_queue_ = dispatch_->queueMs();
  logWarning("backend \"{}\": 503: timeout queue after {} ms",
             wg_->config().backends[backend_].name, t_queue_);
  fail(503, "sQ");
}

// The slot of `server` is held (the dispatch took it): an idle pooled connection takes
// it at once, else the connector owns it until it hands a connection over.
void ServerLeg::useServer(Server& server) {
  log_srv_ = &server;
  if (!retried_fresh_ && may_reuse_) {
    StreamPtr idle = w_.pool().take(server.poolKey());
    if (idle) {
      reused_ = true;
      return onConnected(std::move(idle), server);
    }
  }
  reused_ = false;
  connector_ =
      std::make_unique<Connector>(w_.loop(), *wg_, backend_, static_cast<Connector::Owner&>(*this));
  connector_->setOrigin(origin_.src, origin_.dst, origin_.proxy, origin_.tls);
  connector_->start(server);
}

void ServerLeg::onConnected(StreamPtr stream, Server& server) {
  if (connector_) retries_ += connector_->retries();
  t_connected_ = w_.loop().now();
  srv_ = &server;
  log_srv_ = &server;
  stream_ = std::move(stream);
  stream_->setHandler(this);
  if (!paused_) stream_->readStart();
  sendRequestHead();
  owner_.onLegReady();
}

void ServerLeg::onConnectFailed(ConnectFailure why, Server* last) {
  if (connector_) retries_ += connector_->retries();
  log_srv_ = last;  // the log names the server that could not be reached
  switch (why) {
    case ConnectFailure::kNoServer:
      return fail(503, "SC");
    // As HAProxy: a server that cannot be reached after the retries is 503, refused
    // ("SC") or silent past `timeout connect` ("sC"); 502 is for a response that is
    // invalid or cut (server_leg_response.cc).
    case ConnectFailure::kError:
      return fail(503, "SC");
    case ConnectFailure::kTimeout:
      return fail(503, "sC");
  }
}

// The request head as the server gets it: hop-by-hop fields removed (RFC 9110 §7.6.1),
// framed for the body as the leg sends it, X-Forwarded-For when asked.
void ServerLeg::sendRequestHead() {
  HttpHead fwd;
  fwd.method = req_->method;
  fwd.target = req_->target;
  fwd.version_minor = req_->version_minor;
  fwd.headers = req_->headers;
  http1::removeHopByHop(fwd, upgrade_);
  switch (req_body_.kind) {
    case BodyLength::Kind::kNone:
      fwd.remove("transfer-encoding");
      break;
    case BodyLength::Kind::kLength:
      fwd.remove("transfer-encoding");
      if (fwd.find("content-length") == nullptr)
        fwd.add("content-length", std::to_string(req_body_.length));
      break;
    case BodyLength::Kind::kStream:
      fwd.remove("content-length");
      fwd.set("transfer-encoding", "chunked");
      break;
  }
  if (upgrade_ && req_->method != "CONNECT") fwd.add("connection", "upgrade");
  if (forwardfor_) fwd.add("x-forwarded-for", origin_.src->isIp() ? origin_.src->ip() : "unix");
  std::string out;
  out.reserve(512);
  http1::serializeRequestHead(fwd, out);
  chunk_open_ = false;
  req_sent_ = req_body_.empty();
  stream_->write(std::move(out));
}

void ServerLeg::sendBody(Buffer payload) {
  if (!stream_ || payload.empty()) return;
  if (req_body_.kind != BodyLength::Kind::kStream) return stream_->write(std::move(payload));
  // One chunk per piece, its size line sent with the previous chunk's CRLF: one writev.
  std::string size = fmt::format("{}{:x}\r\n", chunk_open_ ? "\r\n" : "", payload.size());
  chunk_open_ = true;
  stream_->write(std::move(size), std::move(payload));
}

void ServerLeg::endBody(const HttpHead* trailers) {
  req_sent_ = true;
  if (!stream_ || req_body_.kind != BodyLength::Kind::kStream) return;
  std::string end = chunk_open_ ? "\r\n0\r\n" : "0\r\n";
  chunk_open_ = false;
  if (trailers != nullptr) {
    for (const HeaderField& f : trailers->headers) {
      end.append(f.name).append(": ").append(f.value).append("\r\n");
    }
  }
  end.append("\r\n");
  stream_->write(std::move(end));
}

bool ServerLeg::requestBlocked() const {
  return stream_ && stream_->aboveHighWater();
}

void ServerLeg::onStreamDrained(Stream& s) {
  if (&s == stream_.get() && !req_sent_) owner_.onLegDrained();
}

// A pooled connection may have been closed by the server just as we reused it. When
// nothing of the response came back and the request can be sent again (no body sent),
// retry once on a fresh connection instead of failing the client.
bool ServerLeg::retryOnFreshConnection() {
  if (!reused_ || retried_fresh_ || head_done_ || head_buf_) return false;
  if (req_body_.kind != BodyLength::Kind::kNone) return false;
  // The server may have acted on the request before closing: resend only what is
  // idempotent (RFC 9110 §9.2.2).
  std::string_view m = req_->method;
  if (m != "GET" && m != "HEAD" && m != "OPTIONS" && m != "TRACE" && m != "PUT" && m != "DELETE")
    return false;
  retried_fresh_ = true;
  reused_ = false;
  stream_.reset();  // the dead connection; the server's slot (srv_) is kept for the retry
  Server* s = srv_;
  srv_ = nullptr;
  t_connect_start_ = w_.loop().now();
  connector_ =
      std::make_unique<Connector>(w_.loop(), *wg_, backend_, static_cast<Connector::Owner&>(*this));
  connector_->setOrigin(origin_.src, origin_.dst, origin_.proxy, origin_.tls);
  connector_->start(*s);
  return true;
}

void ServerLeg::abandon() {
  if (failed_) return;
  failed_ = true;
  connector_.reset();
  stream_.reset();
  held_.clear();
  decoded_.clear();
  releaseSlot();
}

void ServerLeg::fail(int status, const char* term) {
  if (failed_) return;
  failed_ = true;
  if (status_ <= 0) status_ = status;
  connector_.reset();
  stream_.reset();
  releaseSlot();
  owner_.onLegFailed(status, term, head_done_);  // may destroy us: last statement
}

// Gives the server slot back, after telling a Lua balancer's on_release.
void ServerLeg::releaseSlot() {
  dispatch_.reset();
  if (srv_ == nullptr) return;
  Server* s = srv_;
  srv_ = nullptr;
  const LuaBalancerConfig& lb = s->backend().config().lua_balancer;
  if (lb.release_hook > 0 && wg_->scripts() != nullptr) {
    uint64_t end = t_resp_ ? t_resp_ : w_.loop().now();
    uint64_t took = end - std::min(t_connect_start_ + t_queue_, end);
    wg_->scripts()->runBalancerRelease(lb, s->backend(), *s, took, status_ > 0 ? status_ : 0,
                                       failed_ || status_ <= 0 || status_ >= 500);
  }
  s->release();
}

}  // namespace crescent::core
