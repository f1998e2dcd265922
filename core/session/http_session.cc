#include "core/session/http_session.h"

#include <fmt/format.h>

#include <cstring>

#include "core/backend/connection_pool.h"
#include "core/base/log.h"
#include "core/session/routing.h"
#include "core/session/traffic_log.h"

namespace crescent::core {
namespace {

constexpr uint64_t kLingerMs = 1000;  // how long a closing client may keep sending

uint64_t orElse(uint64_t v, uint64_t fallback) {
  return v != 0 ? v : fallback;
}

std::string errorBody(int status) {
  std::string_view reason = http1::reasonPhrase(status);
  return fmt::format("<html><body><h1>{} {}</h1></body></html>\n", status, reason);
}

}  // namespace

HttpSession::HttpSession(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t fe_index,
                         StreamPtr client)
    : w_(w),
      wg_(std::move(wg)),
      fe_index_(fe_index),
      fe_(&wg_->config().frontends[fe_index]),
      client_(std::move(client)),
      timer_(Timer::create(w.loop(), &HttpSession::onTimer, this)),
      req_parser_(wg_->config().global.bufsize),
      resp_parser_(wg_->config().global.bufsize) {
  wg_->gen().frontendStats(fe_index_).cur.fetch_add(1, std::memory_order_relaxed);
  wg_->gen().frontendStats(fe_index_).total.fetch_add(1, std::memory_order_relaxed);
  wg_->gen().sessionIn();
}

HttpSession::~HttpSession() {
  tunnel_.reset();
  connector_.reset();
  dispatch_.reset();
  if (srv_ != nullptr) srv_->release();
  if (backend_ >= 0) wg_->gen().backend(backend_).release();
}

void HttpSession::start(ConnectionInfo info) {
  t_accept_ = w_.loop().now();
  keepalive_since_ = t_accept_;
  src_ = std::move(info.src);
  dst_ = std::move(info.dst);
  proxy_ = std::move(info.proxy);
  tls_ = std::move(info.tls);
  client_->setHandler(this);
  client_->readStart();
  armTimer();
  if (!info.early.empty()) {
    client_in_.push_back(std::move(info.early));
    processClient();
  }
}

void HttpSession::abort() {
  if (state_ == State::kExchange || state_ == State::kConnecting || state_ == State::kTunnel ||
      state_ == State::kReadHead || state_ == State::kService) {
    term_ = "KD";
    logExchange();
  }
  finish();
}

// ---------------------------------------------------------------- stream events

void HttpSession::onStreamData(Stream& s, Buffer data) {
  if (&s == server_.get()) return onServerData(std::move(data));
  client_in_.push_back(std::move(data));
  processClient();
}

void HttpSession::onStreamEof(Stream& s) {
  if (&s == server_.get()) return onServerEof();
  onClientEof();
}

void HttpSession::onStreamError(Stream& s, int) {
  if (&s == server_.get()) {
    if (!resp_head_done_ && retryOnFreshConnection()) return;
    return abortExchange(resp_head_done_ ? "SD" : "SH");
  }
  // Client reset or write failure.
  if (state_ == State::kWaitRequest || state_ == State::kClosing) return finish();
  abortExchange(resp_head_done_ || state_ == State::kService ? "CD" : "CR");
}

void HttpSession::onStreamDrained(Stream& s) {
  // Back-pressure release: the stream we were feeding caught up.
  if (&s == client_.get()) {
    if (server_ && state_ == State::kExchange && !resp_done_) server_->readStart();
  } else if (&s == server_.get()) {
    if (state_ == State::kExchange && !req_done_) client_->readStart();
  }
}

// ---------------------------------------------------------------- client side

void HttpSession::processClient() {
  if (in_process_) return;  // the outer call's loop picks the new state up
  in_process_ = true;
  while (!done_) {
    State before = state_;
    if (state_ == State::kWaitRequest || state_ == State::kReadHead) {
      if (client_in_.empty()) break;
      if (!readRequestHead()) break;
    } else if (state_ == State::kExchange && !req_done_) {
      if (client_in_.empty() || !server_) break;
      forwardRequestBody();
    } else if (state_ == State::kService) {
      if (client_in_.empty()) break;
      readServiceBody();
    } else if (state_ == State::kClosing) {
      client_in_.clear();
      break;
    } else {
      // Connecting, exchange with the request done (pipelined bytes wait), or tunnel.
      if (!client_in_.empty()) client_->readStop();
      break;
    }
    if (state_ == before && client_in_.empty()) break;
  }
  in_process_ = false;
}

// Moves queued bytes into the head buffer and parses. Returns false when more bytes are
// needed or the session moved on (error).
bool HttpSession::readRequestHead() {
  if (state_ == State::kWaitRequest) {
    state_ = State::kReadHead;
    t_req_start_ = w_.loop().now();
    wall_req_start_ = wallClockMs();
    armTimer();
  }
  while (!client_in_.empty()) {
    Buffer& front = client_in_.front();
    if (!req_buf_) {
      req_buf_ = std::move(front);  // common case: the whole head is in one read, no copy
      client_in_.pop_front();
    } else {
      req_buf_.compact();
      size_t n = req_buf_.append(front.view());
      front.consume(n);
      if (front.empty()) client_in_.pop_front();
      if (n == 0) break;  // head buffer full: the parser reports the error below
    }
    http1::Error err;
    auto r = req_parser_.parseRequest(req_buf_.view(), req_, err);
    if (r == http1::ParseResult::kIncomplete) continue;
    if (r == http1::ParseResult::kError) {
      logWarning("frontend \"{}\": {} from {}: {}", fe_->name, err.status, src_.toString(),
                 err.reason);
      sendError(err.status, "PR");
      return false;
    }
    // Bytes after the head belong to the body or to the next request: requeue them.
    size_t head_len = req_parser_.headLength();
    if (req_buf_.size() > head_len) {
      Buffer rest = BufferPool::local().take();
      rest.append(req_buf_.view().substr(head_len));
      client_in_.push_front(std::move(rest));
    }
    onRequestHead();
    return true;
  }
  if (req_buf_ && req_buf_.tailroom() == 0 && req_buf_.size() >= req_buf_.capacity()) {
    sendError(400, "PR");
    return false;
  }
  return false;
}

void HttpSession::onRequestHead() {
  t_head_ = w_.loop().now();
  request_line_ = fmt::format("{} {} HTTP/1.{}", req_.method, req_.target, req_.version_minor);
  wg_->gen().frontendStats(fe_index_).requests.fetch_add(1, std::memory_order_relaxed);
  http1::Error err;
  if (!http1::analyzeRequest(req_, req_framing_, err)) {
    logWarning("frontend \"{}\": {} from {}: {}", fe_->name, err.status, src_.toString(),
               err.reason);
    return sendError(err.status, "PR");
  }
  client_keep_alive_ = req_framing_.keep_alive && !draining_;
  req_body_.reset(req_framing_.body, req_framing_.content_length);
  req_done_ = req_body_.done();

  int backend = -1;
  ScriptRunner* scripts = wg_->scripts();
  if (fe_->http_request_hook > 0 && scripts != nullptr) {
    RequestContext ctx{req_, src_, dst_, fe_->name};
    ctx.proxy = proxy_.get();
    ctx.tls = tls_.get();
    HookDecision d = scripts->runHttpRequest(fe_->http_request_hook, ctx);
    switch (d.kind) {
      case HookDecision::Kind::kContinue:
        break;
      case HookDecision::Kind::kReply:
        status_ = d.status;
        return sendLocalResponse(d.status, d.headers, d.body, req_done_);
      case HookDecision::Kind::kFail:
        logError("frontend \"{}\": http_request hook failed: {}", fe_->name, d.error);
        return sendError(500, "PR");
      case HookDecision::Kind::kUseBackend:
        backend = wg_->config().findBackend(d.backend);
        if (backend < 0) {
          logError("frontend \"{}\": http_request hook chose unknown backend \"{}\"", fe_->name,
                   d.backend);
          return sendError(503, "PR");
        }
        break;
    }
  }
  if (backend < 0) {
    AclSample sample{&req_, &src_, &dst_};
    backend = selectBackend(*fe_, sample);
  }
  routeRequest(backend);
}

void HttpSession::routeRequest(int backend) {
  if (backend < 0) return sendError(503, "SC");
  backend_ = backend;
  wg_->gen().backend(backend).acquire();
  const BackendConfig& be = wg_->config().backends[backend];
  if (be.service_hook > 0) {
    if (wg_->scripts() == nullptr) return sendError(500, "PR");
    if (req_framing_.expect_continue && !req_done_ && req_.version_minor >= 1)
      writeClient(std::string("HTTP/1.1 100 Continue\r\n\r\n"));
    state_ = State::kService;
    service_body_.clear();
    if (req_done_) runService();
    return;
  }
  connectToServer();
}

void HttpSession::readServiceBody() {
  struct Sink : http1::BodySink {
    std::string* out;
    void onData(std::string_view d) override { out->append(d); }
  } sink;
  sink.out = &service_body_;
  Buffer& front = client_in_.front();
  size_t n = req_body_.feed(front.data(), front.size(), &sink);
  front.consume(n);
  if (front.empty()) client_in_.pop_front();
  if (req_body_.state() == http1::BodyDecoder::State::kError) return sendError(400, "PR");
  if (service_body_.size() > kMaxServiceBody) return sendError(413, "PR");
  if (req_body_.done()) {
    req_done_ = true;
    runService();
  }
}

void HttpSession::runService() {
  const BackendConfig& be = wg_->config().backends[backend_];
  RequestContext ctx{req_, src_, dst_, fe_->name};
  ctx.proxy = proxy_.get();
  ctx.tls = tls_.get();
  ServiceResponse r = wg_->scripts()->runService(be.service_hook, ctx, service_body_);
  service_body_.clear();
  if (!r.ok) {
    logError("backend \"{}\": service failed: {}", be.name, r.error);
    return sendError(500, "PR");
  }
  status_ = r.status;
  t_resp_ = w_.loop().now();
  sendLocalResponse(r.status, r.headers, r.body, true);
}

void HttpSession::sendLocalResponse(int status,
                                    const std::vector<std::pair<std::string, std::string>>& headers,
                                    std::string_view body, bool keep_alive) {
  if (!keep_alive || !req_done_) client_keep_alive_ = false;
  HttpHead h;
  h.status = status;
  h.version_minor = 1;
  bool has_type = false;
  for (const auto& [n, v] : headers) {
    if (equalsNoCase(n, "content-length") || equalsNoCase(n, "connection") ||
        equalsNoCase(n, "transfer-encoding"))
      continue;
    if (equalsNoCase(n, "content-type")) has_type = true;
    h.add(n, v);
  }
  if (!has_type && !body.empty()) h.add("content-type", "text/plain");
  bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
  if (!no_body) h.add("content-length", std::to_string(body.size()));
  // A Lua service's response is compressed like a server's (same rules, compression.h);
  // the whole body is at hand, so the result keeps a Content-Length and the connection.
  std::string coded;
  if (backend_ >= 0 && !no_body && compressionConfig().enabled) {
    noteRequestForCompression();
    http1::Framing framing;
    framing.body = http1::BodyKind::kContentLength;
    framing.content_length = body.size();
    compression::Verdict v = compression::decide(compressionConfig(), gz_req_, h, framing);
    if (v == compression::Verdict::kCompress && compressWhole(body, gz_req_.accepted, coded)) {
      compression::editResponseHead(h, gz_req_.accepted, false);
      h.add("content-length", std::to_string(coded.size()));
      body = coded;
    } else if (v == compression::Verdict::kNotAccepted || v == compression::Verdict::kCompress) {
      compression::addVary(h);  // another client would get it compressed
    }
  }
  if (!client_keep_alive_)
    h.add("connection", "close");
  else if (req_.version_minor == 0)
    h.add("connection", "keep-alive");
  std::string out;
  out.reserve(256 + body.size());
  http1::serializeResponseHead(h, out);
  if (!no_body && req_.method != "HEAD") out.append(body);
  status_ = status;
  writeClient(std::move(out));
  resp_done_ = true;
  if (!req_done_) {
    // The body was not read: the connection cannot carry another request.
    client_keep_alive_ = false;
    req_done_ = true;
  }
  endExchange();
}

// Compresses a whole body (raw framing) into `out`; false when zlib refused.
bool HttpSession::compressWhole(std::string_view body, compression::Algo algo, std::string& out) {
  compression::Encoder enc(BufferPool::local(), compression::Encoder::Framing::kRaw);
  std::vector<Buffer> parts;
  if (!enc.init(algo, compressionConfig().level) || !enc.feed(body, parts) || !enc.finish(parts))
    return false;
  for (const Buffer& b : parts) out.append(b.view());
  return true;
}

void HttpSession::sendError(int status, const char* term) {
  term_ = term;
  status_ = status;
  client_keep_alive_ = false;
  std::string body = errorBody(status);
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\ncontent-length: {}\r\ncache-control: no-cache\r\ncontent-type: "
      "text/html\r\nconnection: close\r\n\r\n{}",
      status, http1::reasonPhrase(status), body.size(), body);
  if (server_) releaseServer(false);
  connector_.reset();
  releaseSlot();
  writeClient(std::move(out));
  logExchange();
  beginClosing();
}

void HttpSession::onClientEof() {
  client_eof_ = true;
  client_keep_alive_ = false;
  switch (state_) {
    case State::kWaitRequest:
      // The previous response may still be queued: close after it has left.
      return beginClosing();
    case State::kClosing:
      if (client_->shutdownDone()) return finish();
      return;  // onStreamShutdownDone() finishes
    case State::kReadHead:
      term_ = "CR";
      logExchange();
      return finish();
    case State::kService:
      if (!req_done_) return abortExchange("CR");
      return;
    case State::kConnecting:
      // A client that leaves while its request waits in a queue leaves the queue at once.
      if (dispatch_ && dispatch_->queued()) return abortExchange("CQ");
      [[fallthrough]];
    case State::kExchange:
      // A client may half-close after its request: the response still goes out.
      if (!req_done_) return abortExchange(resp_head_done_ ? "CD" : "CR");
      return;
    case State::kTunnel:
      return;  // the tunnel handles its own streams
  }
}

// The request and the response are both complete: log, recycle, and go on.
void HttpSession::endExchange() {
  if (!(req_done_ && resp_done_)) return;
  logExchange();
  releaseServer(server_reusable_ && resp_framing_.keep_alive);
  if (backend_ >= 0) {
    wg_->gen().backend(backend_).release();
    backend_ = -1;
  }
  if (!client_keep_alive_ || client_eof_) return beginClosing();
  resetExchange();
  state_ = State::kWaitRequest;
  keepalive_since_ = w_.loop().now();
  moveToNewest();
  armTimer();
  client_->readStart();
  processClient();
}

// The next request runs on the newest generation (DESIGN §3), in its frontend of the same
// name. A connection whose frontend the reload removed (or turned to TCP) stays on its
// generation until it closes.
void HttpSession::moveToNewest() {
  std::shared_ptr<WorkerGeneration> newest = w_.current();
  if (newest == nullptr || newest == wg_) return;
  int fe = newest->config().findFrontend(fe_->name);
  if (fe < 0 || newest->config().frontends[static_cast<size_t>(fe)].mode != Mode::kHttp) return;
  wg_->gen().frontendStats(fe_index_).cur.fetch_sub(1, std::memory_order_relaxed);
  wg_->gen().sessionOut();
  wg_ = std::move(newest);
  fe_index_ = static_cast<size_t>(fe);
  fe_ = &wg_->config().frontends[fe_index_];
  wg_->gen().frontendStats(fe_index_).cur.fetch_add(1, std::memory_order_relaxed);
  wg_->gen().sessionIn();
}

uint64_t HttpSession::generationId() const {
  return wg_->gen().id();
}

void HttpSession::onNewGeneration() {
  if (state_ == State::kWaitRequest && client_in_.empty() && !done_) moveToNewest();
}

void HttpSession::drain() {
  draining_ = true;
  // An exchange whose response head has not left yet still says `Connection: close`.
  if (state_ != State::kWaitRequest && state_ != State::kTunnel && !resp_head_done_)
    client_keep_alive_ = false;
}

std::string HttpSession::describe() const {
  static const char* const kStates[] = {"idle",    "head",   "connect", "exchange",
                                        "service", "tunnel", "closing"};
  uint64_t now = w_.loop().now();
  return fmt::format("proto=http gen={} fe={} src={} age={}ms state={}{}", wg_->gen().id(),
                     fe_->name, src_.toString(), now - t_accept_, kStates[static_cast<int>(state_)],
                     log_srv_ != nullptr
                         ? fmt::format(" srv={}/{}", log_srv_->backend().name(), log_srv_->name())
                         : std::string());
}

void HttpSession::resetExchange() {
  req_buf_.release();
  req_parser_.reset();
  req_.clear();
  req_framing_ = {};
  req_done_ = false;
  client_keep_alive_ = true;
  resp_buf_.release();
  resp_parser_.reset();
  resp_.clear();
  resp_framing_ = {};
  resp_head_done_ = resp_done_ = false;
  server_reusable_ = true;
  dechunk_ = false;
  reused_conn_ = retried_fresh_ = false;
  log_srv_ = nullptr;
  t_req_start_ = t_head_ = t_connect_start_ = t_connected_ = t_resp_ = t_queue_ = 0;
  bytes_to_client_ = 0;
  status_ = -1;
  retries_ = 0;
  term_ = "--";
  request_line_.clear();
  first_request_ = false;
}

// Response written (or queued): stop accepting requests, send FIN after the queued bytes,
// and read-and-discard until the client closes or kLingerMs passes, so that unread
// client bytes do not turn our close into a reset that destroys the response.
void HttpSession::beginClosing() {
  state_ = State::kClosing;
  connector_.reset();
  if (server_) releaseServer(false);
  client_in_.clear();
  client_->shutdown();
  if (client_eof_ && client_->shutdownDone()) return finish();
  if (client_eof_) return armTimer();  // close once the FIN (after the response) has left
  client_->readStart();
  armTimer();
}

void HttpSession::onStreamShutdownDone(Stream& s) {
  if (&s != client_.get() || state_ != State::kClosing) return;
  if (client_eof_) return finish();
  armTimer();  // linger: let the client read and close first
}

void HttpSession::finish() {
  if (done_) return;
  done_ = true;
  timer_->stop();
  client_in_.clear();
  client_.reset();
  server_.reset();
  connector_.reset();
  releaseSlot();
  // Before endSession(): it may accept a connection that waited for this slot.
  wg_->gen().frontendStats(fe_index_).cur.fetch_sub(1, std::memory_order_relaxed);
  wg_->gen().sessionOut();
  w_.endSession(this);
}

// ---------------------------------------------------------------- timeouts

void HttpSession::armTimer() {
  const Timeouts& t = fe_->timeout;
  uint64_t ms = 0;
  switch (state_) {
    case State::kWaitRequest:
      ms = first_request_ ? orElse(t.http_request, t.client)
                          : orElse(t.http_keep_alive, orElse(t.http_request, t.client));
      break;
    case State::kReadHead:
      ms = orElse(t.http_request, t.client);
      break;
    case State::kClosing:
      if (!client_->shutdownDone()) {
        ms = t.client;  // the response is still being written: client inactivity bounds it
      } else {
        ms = orElse(t.client_fin, kLingerMs);
        if (ms > kLingerMs) ms = kLingerMs;
      }
      break;
    case State::kExchange:
    case State::kService: {
      ms = t.client;
      if (state_ == State::kExchange && backend_ >= 0) {
        uint64_t s = wg_->config().backends[backend_].timeout.server;
        if (s != 0 && (ms == 0 || s < ms)) ms = s;
      }
      break;
    }
    case State::kConnecting:
    case State::kTunnel:
      timer_->stop();
      return;
  }
  if (ms == 0) {
    timer_->stop();
    return;
  }
  timer_->start(ms);
}

void HttpSession::onTimer(void* ctx) {
  static_cast<HttpSession*>(ctx)->checkTimeouts();
}

void HttpSession::checkTimeouts() {
  uint64_t now = w_.loop().now();
  const Timeouts& t = fe_->timeout;
  switch (state_) {
    case State::kWaitRequest:
      return finish();  // idle keep-alive: close quietly
    case State::kReadHead:
      logWarning("frontend \"{}\": 408 for {}: request head not received in time", fe_->name,
                 src_.toString());
      return sendError(408, "cR");
    case State::kClosing:
      if (client_->shutdownDone() || (t.client && now - client_->lastActivity() >= t.client))
        return finish();
      break;
    case State::kService:
      if (t.client && now - client_->lastActivity() >= t.client) return sendError(408, "cD");
      break;
    case State::kExchange: {
      uint64_t st = backend_ >= 0 ? wg_->config().backends[backend_].timeout.server : 0;
      if (st && server_ && now - server_->lastActivity() >= st) {
        if (!resp_head_done_) {
          logWarning("backend \"{}\": 504: server \"{}\" did not answer in time",
                     wg_->config().backends[backend_].name, srv_ ? srv_->name() : "?");
          return sendError(504, "sH");
        }
        return abortExchange("sD");
      }
      if (t.client && now - client_->lastActivity() >= t.client) {
        bool waiting_on_client = !req_done_ || (resp_head_done_ && client_->pendingBytes() > 0);
        if (waiting_on_client) return abortExchange(resp_head_done_ ? "cD" : "cR");
      }
      break;
    }
    case State::kConnecting:
    case State::kTunnel:
      return;
  }
  // Not expired: activity moved the deadline. Re-arm for what is left.
  NextDeadline next(now);
  next.consider(client_->lastActivity(), t.client);
  if (server_ && backend_ >= 0)
    next.consider(server_->lastActivity(), wg_->config().backends[backend_].timeout.server);
  if (next.ms()) timer_->start(next.ms());
}

// ---------------------------------------------------------------- output and log

void HttpSession::writeClient(std::string s) {
  bytes_to_client_ += s.size();
  client_->write(std::move(s));
}

void HttpSession::writeClient(Buffer b) {
  bytes_to_client_ += b.size();
  client_->write(std::move(b));
}

void HttpSession::writeClient(std::string head, Buffer b) {
  bytes_to_client_ += head.size() + b.size();
  client_->write(std::move(head), std::move(b));
}

void HttpSession::logExchange() {
  if (!fe_->log) return;
  uint64_t now = w_.loop().now();
  uint64_t start = t_req_start_ ? t_req_start_ : t_accept_;
  int64_t tr = t_head_ ? static_cast<int64_t>(t_head_ - start) : -1;
  int64_t tw = t_connect_start_ ? static_cast<int64_t>(t_queue_) : -1;
  int64_t tc = t_connected_ ? static_cast<int64_t>(t_connected_ - t_connect_start_) : -1;
  int64_t tresp = (t_resp_ && t_head_)
                      ? static_cast<int64_t>(t_resp_ - (t_connected_ ? t_connected_ : t_head_))
                      : -1;
  std::string be = backend_ >= 0 ? wg_->config().backends[backend_].name : fe_->name;
  std::string sv = log_srv_ != nullptr ? log_srv_->name()
                   : (backend_ >= 0 && wg_->config().backends[backend_].service_hook > 0)
                       ? "<service>"
                       : "<NOSRV>";
  std::string term = term_;
  if (term.size() < 4) term += "--";
  logTraffic(fmt::format(
      "{}:{} [{}] {} {}/{} {}/{}/{}/{}/{} {} {} - - {} {}/{}/{}/{}/{} {}/{} \"{}\"", src_.ip(),
      src_.port(), formatLogDate(wall_req_start_ ? wall_req_start_ : wallClockMs()), fe_->name, be,
      sv, tr, tw, tc, tresp, now - start, status_, bytes_to_client_, term,
      w_.counters().actconn.load(std::memory_order_relaxed),
      wg_->gen().frontendStats(fe_index_).cur.load(std::memory_order_relaxed),
      backend_ >= 0 ? wg_->gen().backend(backend_).current() : 0,
      log_srv_ != nullptr ? log_srv_->current() : 0, retries_,
      log_srv_ != nullptr ? log_srv_->queued() : 0,
      backend_ >= 0 ? wg_->gen().backend(backend_).queued() : 0,
      request_line_.empty() ? "<BADREQ>" : request_line_));
}

}  // namespace crescent::core
