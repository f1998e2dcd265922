// The server half of HttpSession: connecting, forwarding the request, reading and
// forwarding the response, tunnels.
#include <fmt/format.h>

#include "core/backend/connection_pool.h"
#include "core/base/log.h"
#include "core/session/http_session.h"

namespace crescent::core {

void HttpSession::connectToServer() {
  state_ = State::kConnecting;
  t_connect_start_ = w_.loop().now();
  armTimer();
  if (retried_fresh_ && srv_ != nullptr) {
    // Second try of an exchange whose reused connection was closed under us: same server,
    // same slot, a fresh connection.
    Server* s = srv_;
    srv_ = nullptr;
    return useServer(*s);
  }
  dispatch_ = std::make_unique<ServerDispatch>(w_.loop(), wg_, backend_,
                                               static_cast<ServerDispatch::Owner&>(*this));
  PickRequest pr;
  pr.src = &src_;
  std::string_view target = req_.target;
  size_t q = target.find('?');
  pr.path = target.substr(0, q);
  if (q != std::string_view::npos) pr.query = target.substr(q + 1);
  pr.head = &req_;
  pr.now_ms = monotonicMs();
  RequestContext ctx{req_, src_, dst_, fe_->name};
  ctx.proxy = proxy_.get();
  ctx.tls = tls_.get();
  switch (dispatch_->start(ctx, pr)) {
    case ServerDispatch::Outcome::kAssigned:
      return useServer(*dispatch_->server());
    case ServerDispatch::Outcome::kQueued:
      return;  // onQueueGranted / onQueueTimeout
    case ServerDispatch::Outcome::kNoServer:
      logWarning("backend \"{}\": 503: no server available", wg_->config().backends[backend_].name);
      return sendError(503, "SC");
    case ServerDispatch::Outcome::kQueueFull:
      logWarning("backend \"{}\": 503: queue full (maxqueue)",
                 wg_->config().backends[backend_].name);
      return sendError(503, "sQ");
  }
}

void HttpSession::onQueueGranted(Server& server) {
  t_queue_ = dispatch_->queueMs();
  useServer(server);
}

void HttpSession::onQueueTimeout() {
  t_queue_ = dispatch_->queueMs();
  logWarning("backend \"{}\": 503: timeout queue after {} ms",
             wg_->config().backends[backend_].name, t_queue_);
  sendError(503, "sQ");
}

void HttpSession::useServer(Server& server) {
  Server* s = &server;
  if (!retried_fresh_) {
    StreamPtr idle = w_.pool().take(s->poolKey());
    if (idle) {
      reused_conn_ = true;
      return onConnected(std::move(idle), *s);
    }
  }
  reused_conn_ = false;
  connector_ =
      std::make_unique<Connector>(w_.loop(), *wg_, backend_, static_cast<Connector::Owner&>(*this));
  connector_->setOrigin(&src_, &dst_, proxy_.get(), tls_.get());
  connector_->start(*s);
}

void HttpSession::onConnected(StreamPtr stream, Server& server) {
  if (connector_) retries_ += connector_->retries();
  t_connected_ = w_.loop().now();
  srv_ = &server;
  log_srv_ = &server;
  server_ = std::move(stream);
  server_->setHandler(this);
  server_->readStart();
  state_ = State::kExchange;
  sendRequestHead();
  armTimer();
  client_->readStart();
  processClient();  // body bytes that arrived with the head, or while connecting
}

void HttpSession::onConnectFailed(ConnectFailure why, Server* last) {
  if (connector_) retries_ += connector_->retries();
  log_srv_ = last;  // the log names the server that could not be reached
  switch (why) {
    case ConnectFailure::kNoServer:
      return sendError(503, "SC");
    case ConnectFailure::kError:
      return sendError(502, "SC");
    case ConnectFailure::kTimeout:
      return sendError(504, "sC");
  }
}

void HttpSession::sendRequestHead() {
  const BackendConfig& be = wg_->config().backends[backend_];
  noteRequestForCompression();
  // Work on a copy of the field list so a retry on a fresh connection can resend.
  HttpHead fwd;
  fwd.method = req_.method;
  fwd.target = req_.target;
  fwd.version_minor = req_.version_minor;
  fwd.headers = req_.headers;
  http1::removeHopByHop(fwd, req_framing_.upgrade);
  if (req_framing_.upgrade && req_.method != "CONNECT") fwd.add("connection", "upgrade");
  if (fe_->forwardfor || be.forwardfor)
    fwd.add("x-forwarded-for", src_.isIp() ? src_.ip() : "unix");
  std::string out;
  out.reserve(req_buf_.size() + 128);
  http1::serializeRequestHead(fwd, out);
  server_->write(std::move(out));
}

void HttpSession::forwardRequestBody() {
  Buffer& front = client_in_.front();
  size_t n = req_body_.feed(front.data(), front.size());
  if (req_body_.state() == http1::BodyDecoder::State::kError) {
    logWarning("frontend \"{}\": 400 from {}: {}", fe_->name, src_.toString(),
               req_body_.error().reason);
    if (!resp_head_done_) return sendError(400, "PR");
    return abortExchange("PD");
  }
  if (n == front.size()) {
    server_->write(std::move(front));
    client_in_.pop_front();
  } else {
    Buffer part = BufferPool::local().take();
    part.append(front.view().substr(0, n));
    front.consume(n);
    server_->write(std::move(part));
  }
  if (server_->aboveHighWater()) client_->readStop();  // resumed in onStreamDrained
  if (req_body_.done()) {
    req_done_ = true;
    endExchange();
  }
}

void HttpSession::onServerData(Buffer data) {
  if (state_ != State::kExchange) return;
  if (!resp_head_done_) {
    if (!readResponseHead(data)) return;
  }
  if (!data.empty()) forwardResponseBody(std::move(data));
}

// Accumulates response head bytes; on a complete head, handles it and leaves the bytes
// after it in `data`. Returns false while the head is incomplete or on error.
bool HttpSession::readResponseHead(Buffer& data) {
  if (!resp_buf_) {
    resp_buf_ = std::move(data);
  } else {
    resp_buf_.compact();
    size_t n = resp_buf_.append(data.view());
    data.consume(n);
    if (!data.empty()) {
      logWarning("backend \"{}\": 502: response head too large",
                 wg_->config().backends[backend_].name);
      sendError(502, "PH");
      return false;
    }
    data.release();
  }
  for (;;) {
    http1::Error err;
    auto r = resp_parser_.parseResponse(resp_buf_.view(), resp_, err);
    if (r == http1::ParseResult::kIncomplete) {
      if (resp_buf_.tailroom() == 0) {
        sendError(502, "PH");
      }
      return false;
    }
    if (r == http1::ParseResult::kError) {
      logWarning("backend \"{}\": 502: invalid response from server \"{}\": {}",
                 wg_->config().backends[backend_].name, srv_ ? srv_->name() : "?", err.reason);
      sendError(502, "PH");
      return false;
    }
    size_t head_len = resp_parser_.headLength();
    Buffer rest;
    if (resp_buf_.size() > head_len) {
      rest = BufferPool::local().take();
      rest.append(resp_buf_.view().substr(head_len));
    }
    if (resp_.status >= 100 && resp_.status < 200 && resp_.status != 101) {
      // Interim response (100 Continue, 103): pass it on to HTTP/1.1 clients, then wait for
      // the final one.
      if (req_.version_minor >= 1) {
        std::string out;
        http1::serializeResponseHead(resp_, out);
        writeClient(std::move(out));
      }
      resp_parser_.reset();
      resp_.clear();
      resp_buf_ = std::move(rest);
      if (!resp_buf_) return false;
      continue;
    }
    onResponseHead(std::move(rest));
    return false;  // onResponseHead forwarded whatever followed the head
  }
}

void HttpSession::onResponseHead(Buffer rest) {
  t_resp_ = w_.loop().now();
  resp_head_done_ = true;
  status_ = resp_.status;
  if (srv_ != nullptr) {
    srv_->recordResponseTime(t_resp_ - t_connect_start_ - t_queue_);
    srv_->observe(resp_.status < 500, "HTTP status 5xx", true);
  }
  http1::Error err;
  if (!http1::analyzeResponse(resp_, req_.method, resp_framing_, err)) {
    logWarning("backend \"{}\": 502: invalid response from server \"{}\": {}",
               wg_->config().backends[backend_].name, srv_ ? srv_->name() : "?", err.reason);
    resp_head_done_ = false;
    return sendError(502, "PH");
  }
  bool tunnel = resp_framing_.upgrade && (resp_.status == 101 || req_.method == "CONNECT");
  if (resp_framing_.body == http1::BodyKind::kUntilClose) client_keep_alive_ = false;
  compression::Verdict gz = tunnel ? compression::Verdict::kNoBody : startCompression();
  dechunk_ =
      !encoder_ && resp_framing_.body == http1::BodyKind::kChunked && req_.version_minor == 0;
  // A compressed body for an HTTP/1.0 client is delimited by close.
  if (dechunk_ || (encoder_ && req_.version_minor == 0)) client_keep_alive_ = false;

  http1::removeHopByHop(resp_, tunnel);
  if (dechunk_) resp_.remove("transfer-encoding");
  if (encoder_)
    compression::editResponseHead(resp_, encoder_->algo(), req_.version_minor >= 1);
  else if (gz == compression::Verdict::kNotAccepted)
    compression::addVary(resp_);  // another client would get it compressed
  if (tunnel) {
    if (resp_.status == 101) resp_.add("connection", "upgrade");
  } else if (!client_keep_alive_) {
    resp_.add("connection", "close");
  } else if (req_.version_minor == 0) {
    resp_.add("connection", "keep-alive");
  }
  int version = resp_.version_minor;
  resp_.version_minor = 1;
  std::string out;
  out.reserve(resp_buf_.size() + 64);
  http1::serializeResponseHead(resp_, out);
  resp_.version_minor = version;
  resp_buf_.release();

  if (tunnel) {
    writeClient(std::move(out));
    return startTunnel(std::move(rest));
  }
  resp_body_.reset(resp_framing_.body, resp_framing_.content_length);
  if (resp_body_.done()) {
    writeClient(std::move(out));
    resp_done_ = true;
    if (rest && !rest.empty()) server_reusable_ = false;  // bytes after a bodiless response
    return endExchange();
  }
  if (!rest || rest.empty()) return writeClient(std::move(out));
  // The head and the body bytes that came with it leave in one write.
  forwardResponseBody(std::move(rest), std::move(out));
}

void HttpSession::forwardResponseBody(Buffer data, std::string head) {
  if (resp_done_) {
    server_reusable_ = false;  // the server sent more than the response
    return;
  }
  if (encoder_) return compressResponseBody(std::move(data), std::move(head));
  size_t n;
  if (dechunk_) {
    if (!head.empty()) writeClient(std::move(head));
    struct Sink : http1::BodySink {
      HttpSession* self;
      void onData(std::string_view d) override {
        Buffer b = BufferPool::local().take();
        b.append(d);
        self->writeClient(std::move(b));
      }
    } sink;
    sink.self = this;
    n = resp_body_.feed(data.data(), data.size(), &sink);
  } else {
    n = resp_body_.feed(data.data(), data.size());
    if (n == data.size()) {
      writeClient(std::move(head), std::move(data));
    } else {
      Buffer part = BufferPool::local().take();
      part.append(data.view().substr(0, n));
      writeClient(std::move(head), std::move(part));
    }
  }
  if (resp_body_.state() == http1::BodyDecoder::State::kError) {
    logWarning("backend \"{}\": invalid response body from server \"{}\": {}",
               wg_->config().backends[backend_].name, srv_ ? srv_->name() : "?",
               resp_body_.error().reason);
    return abortExchange("SD");
  }
  if (n < data.size() && !dechunk_) server_reusable_ = false;
  if (resp_body_.done()) {
    resp_done_ = true;
    return endExchange();
  }
  if (client_->aboveHighWater()) server_->readStop();  // resumed in onStreamDrained
}

void HttpSession::onServerEof() {
  server_reusable_ = false;
  if (!resp_head_done_) {
    if (retryOnFreshConnection()) return;
    logWarning("backend \"{}\": 502: server \"{}\" closed the connection without a response",
               wg_->config().backends[backend_].name, srv_ ? srv_->name() : "?");
    return sendError(502, "SH");
  }
  resp_body_.finish();
  if (resp_body_.done()) {
    if (encoder_ && !finishCompression()) return abortExchange("PD");
    resp_done_ = true;
    return endExchange();
  }
  abortExchange("SD");
}

// ---------------------------------------------------------------- compression

// The backend's compression settings when enabled there, else the frontend's.
const CompressionConfig& HttpSession::compressionConfig() const {
  const CompressionConfig& be = wg_->config().backends[backend_].compression;
  return be.enabled ? be : fe_->compression;
}

// Takes what the decision needs from the request head before it is forwarded.
void HttpSession::noteRequestForCompression() {
  gz_req_ = {};
  const CompressionConfig& cfg = compressionConfig();
  if (!cfg.enabled) return;
  gz_req_.accepted = compression::negotiate(req_, cfg.algos);
  gz_req_.head = req_.method == "HEAD";
  gz_req_.range = req_.find("range") != nullptr;
}

// Decides on the response head (before any of it is edited or sent) and, to compress,
// creates encoder_. Without an encoder the response is forwarded as it is.
compression::Verdict HttpSession::startCompression() {
  encoder_.reset();
  gz_out_.clear();
  const CompressionConfig& cfg = compressionConfig();
  if (!cfg.enabled) return compression::Verdict::kDisabled;
  compression::Verdict v = compression::decide(cfg, gz_req_, resp_, resp_framing_);
  if (v != compression::Verdict::kCompress) return v;
  auto framing = req_.version_minor >= 1 ? compression::Encoder::Framing::kChunked
                                         : compression::Encoder::Framing::kRaw;
  encoder_ = std::make_unique<compression::Encoder>(BufferPool::local(), framing);
  if (!encoder_->init(gz_req_.accepted, cfg.level)) {
    logError("frontend \"{}\": zlib could not start a {} stream: response sent uncompressed",
             fe_->name, compression::algoName(gz_req_.accepted));
    encoder_.reset();
  }
  return v;
}

// forwardResponseBody() for a compressed response: the body decoder strips the server's
// framing (Content-Length, chunked or until close), the payload goes through the encoder,
// and whatever it produced is written at once, framed for the client.
void HttpSession::compressResponseBody(Buffer data, std::string head) {
  struct Sink : http1::BodySink {
    compression::Encoder* enc;
    std::vector<Buffer>* out;
    bool ok = true;
    void onData(std::string_view d) override { ok = ok && enc->feed(d, *out); }
  } sink;
  sink.enc = encoder_.get();
  sink.out = &gz_out_;
  size_t n = resp_body_.feed(data.data(), data.size(), &sink);
  writeCompressed(std::move(head));
  if (!sink.ok) {
    logError("frontend \"{}\": zlib failed while compressing a response: response cut", fe_->name);
    return abortExchange("PD");
  }
  if (resp_body_.state() == http1::BodyDecoder::State::kError) {
    logWarning("backend \"{}\": invalid response body from server \"{}\": {}",
               wg_->config().backends[backend_].name, srv_ ? srv_->name() : "?",
               resp_body_.error().reason);
    return abortExchange("SD");
  }
  if (n < data.size()) server_reusable_ = false;
  if (resp_body_.done()) {
    if (!finishCompression()) return abortExchange("PD");
    resp_done_ = true;
    return endExchange();
  }
  if (client_->aboveHighWater()) server_->readStop();  // resumed in onStreamDrained
}

// Ends the compressed stream (and, for HTTP/1.1, the chunked body) and frees zlib's state
// before the connection may idle in keep-alive. False on a zlib error (logged).
bool HttpSession::finishCompression() {
  bool ok = encoder_->finish(gz_out_);
  writeCompressed({});
  encoder_.reset();
  if (!ok) logError("frontend \"{}\": zlib failed while ending a compressed response", fe_->name);
  return ok;
}

// Writes `head` (when not empty) and the encoder's output, the head with the first buffer.
void HttpSession::writeCompressed(std::string head) {
  size_t i = 0;
  if (!head.empty()) {
    if (gz_out_.empty())
      writeClient(std::move(head));
    else
      writeClient(std::move(head), std::move(gz_out_[i++]));
  }
  for (; i < gz_out_.size(); ++i) writeClient(std::move(gz_out_[i]));
  gz_out_.clear();
}

// A pooled connection may have been closed by the server just as we reused it. When
// nothing of the response came back and the request can be sent again (no body sent),
// retry once on a fresh connection instead of failing the client.
bool HttpSession::retryOnFreshConnection() {
  if (!reused_conn_ || retried_fresh_ || resp_head_done_ || resp_buf_) return false;
  if (req_framing_.body != http1::BodyKind::kNone) return false;
  // The server may have acted on the request before closing: resend only what is
  // idempotent (RFC 9110 §9.2.2).
  std::string_view m = req_.method;
  if (m != "GET" && m != "HEAD" && m != "OPTIONS" && m != "TRACE" && m != "PUT" && m != "DELETE")
    return false;
  retried_fresh_ = true;
  reused_conn_ = false;
  server_.reset();  // the dead connection; the server's slot (srv_) is kept for the retry
  connectToServer();
  return true;
}

void HttpSession::startTunnel(Buffer to_client) {
  state_ = State::kTunnel;
  timer_->stop();
  const BackendConfig& be = wg_->config().backends[backend_];
  TunnelTimeouts t = TunnelTimeouts::from(fe_->timeout, be.timeout);
  // Bytes the client already sent after its request head go to the server first.
  Buffer to_server;
  if (!client_in_.empty()) {
    to_server = std::move(client_in_.front());
    client_in_.pop_front();
    while (!client_in_.empty()) {
      server_->write(std::move(to_server));
      to_server = std::move(client_in_.front());
      client_in_.pop_front();
    }
  }
  tunnel_ = std::make_unique<Tunnel>(w_.loop(), *client_, *server_, t,
                                     static_cast<Tunnel::Owner&>(*this));
  tunnel_->start(std::move(to_server), std::move(to_client));
}

void HttpSession::onTunnelEnd(TunnelEnd why) {
  switch (why) {
    case TunnelEnd::kClosed:
      term_ = "--";
      break;
    case TunnelEnd::kClientAbort:
      term_ = "CD";
      break;
    case TunnelEnd::kServerAbort:
      term_ = "SD";
      break;
    case TunnelEnd::kClientTimeout:
      term_ = "cD";
      break;
    case TunnelEnd::kServerTimeout:
      term_ = "sD";
      break;
  }
  logExchange();
  finish();
}

void HttpSession::releaseServer(bool reusable) {
  if (server_) {
    // A connection that began with a PROXY header speaks for one client: never shared.
    if (reusable && srv_ != nullptr && srv_->config().send_proxy == 0 &&
        server_->pendingBytes() == 0 && !server_->closing()) {
      w_.pool().give(srv_->poolKey(), std::move(server_));
    } else {
      server_.reset();
    }
  }
  releaseSlot();
}

// Gives the exchange's server slot back, after telling a Lua balancer's on_release.
void HttpSession::releaseSlot() {
  dispatch_.reset();
  if (srv_ == nullptr) return;
  Server* s = srv_;
  srv_ = nullptr;
  const LuaBalancerConfig& lb = s->backend().config().lua_balancer;
  if (lb.release_hook > 0 && wg_->scripts() != nullptr) {
    uint64_t end = t_resp_ ? t_resp_ : w_.loop().now();
    uint64_t took = end - std::min(t_connect_start_ + t_queue_, end);
    wg_->scripts()->runBalancerRelease(lb, s->backend(), *s, took, status_ > 0 ? status_ : 0,
                                       status_ < 0 || status_ >= 500);
  }
  s->release();
}

// Something failed mid-exchange after (part of) the response may have gone out: no error
// page can be sent any more; log and close both sides.
void HttpSession::abortExchange(const char* term) {
  if (!resp_head_done_ && state_ != State::kService) {
    // Nothing sent yet: the client still gets a proper answer.
    if (term[0] == 'C' || term[0] == 'c') {
      term_ = term;
      logExchange();
      return finish();
    }
    return sendError(term[0] == 's' ? 504 : 502, term);
  }
  term_ = term;
  logExchange();
  finish();
}

}  // namespace crescent::core
