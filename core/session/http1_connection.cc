#include "core/session/http1_connection.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/base/log.h"
#include "core/session/error_capture.h"
#include "core/session/error_pages.h"
#include "core/session/traffic_log.h"

namespace crescent::core {
namespace {

constexpr uint64_t kLingerMs = 1000;  // how long a closing client may keep sending
// A local body up to this size is written in one piece with its head (bytes); a larger
// one is written on its own, without being copied behind the head.
constexpr size_t kCoalesceBody = 64 * 1024;

uint64_t orElse(uint64_t v, uint64_t fallback) {
  return v != 0 ? v : fallback;
}

}  // namespace

Http1Connection::Http1Connection(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg,
                                 size_t fe_index, StreamPtr client)
    : w_(w),
      wg_(std::move(wg)),
      fe_index_(fe_index),
      fe_(&wg_->config().frontends[fe_index]),
      client_(std::move(client)),
      timer_(Timer::create(w.loop(), &Http1Connection::onTimer, this)),
      parser_(wg_->config().global.bufsize, wg_->config().global.max_headers) {
  wg_->gen().frontendStats(fe_index_).cur.fetch_add(1, std::memory_order_relaxed);
  wg_->gen().frontendStats(fe_index_).total.fetch_add(1, std::memory_order_relaxed);
  wg_->gen().sessionIn();
}

Http1Connection::~Http1Connection() {
  exchange_.reset();
}

void Http1Connection::start(ConnectionInfo info) {
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
    process();
  }
}

void Http1Connection::abort() {
  aborting_ = true;
  if (exchange_) return exchange_->abort("KD");  // onExchangeEnd finishes
  if (state_ == State::kHead) refuse(-1, "KD");
  finish();
}

// ---------------------------------------------------------------- stream events

void Http1Connection::onStreamData(Stream&, Buffer data) {
  client_in_.push_back(std::move(data));
  process();
}

void Http1Connection::onStreamEof(Stream&) {
  client_eof_ = true;
  keep_alive_ = false;
  switch (state_) {
    case State::kIdle:
      // The previous response may still be queued: close after it has left.
      return beginClosing();
    case State::kClosing:
      if (client_->shutdownDone()) return finish();
      return;  // onStreamShutdownDone() finishes
    case State::kHead:
      refuse(-1, "CR");
      return finish();
    case State::kExchange:
      return exchange_->onClientEof();
    case State::kTunnel:
      return;  // the tunnel handles its own streams
  }
}

void Http1Connection::onStreamError(Stream&, int) {
  client_failed_ = true;
  keep_alive_ = false;
  switch (state_) {
    case State::kIdle:
    case State::kClosing:
      return finish();
    case State::kHead:
      refuse(-1, "CR");
      return finish();
    case State::kExchange:
      return exchange_->onClientError();  // onExchangeEnd finishes
    case State::kTunnel:
      return;
  }
}

void Http1Connection::onStreamDrained(Stream&) {
  if (state_ == State::kExchange && exchange_) exchange_->onClientDrained();
}

// ---------------------------------------------------------------- reading

void Http1Connection::process() {
  if (in_process_) return;  // the outer call's loop picks the new state up
  in_process_ = true;
  while (!done_ && !client_in_.empty()) {
    if (state_ == State::kIdle || state_ == State::kHead) {
      if (!readHead()) break;
      continue;
    }
    if (state_ == State::kExchange && body_wanted_ && !body_done_) {
      deliverBody();
      continue;
    }
    if (state_ == State::kClosing) client_in_.clear();
    // The exchange does not take bytes now (it waits, or these are a pipelined request):
    // keep one buffer's worth, and let the kernel hold the rest.
    if (state_ == State::kExchange) client_->readStop();
    break;
  }
  in_process_ = false;
}

// Moves queued bytes into the head buffer and parses. Returns false when more bytes are
// needed or the connection moved on (an error).
bool Http1Connection::readHead() {
  if (state_ == State::kIdle) {
    state_ = State::kHead;
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
    auto r = parser_.parseRequest(req_buf_.view(), head_, err);
    if (r == http1::ParseResult::kIncomplete) continue;
    if (r == http1::ParseResult::kError) {
      logWarning("frontend \"{}\": {} from {}: {}", fe_->name, err.status, src_.toString(),
                 err.reason);
      captureError(err, req_buf_.view(), err.offset);
      refuse(err.status, "PR");
      return false;
    }
    // Bytes after the head belong to the body or to the next request: requeue them.
    size_t head_len = parser_.headLength();
    if (req_buf_.size() > head_len) {
      Buffer rest = BufferPool::local().take();
      rest.append(req_buf_.view().substr(head_len));
      client_in_.push_front(std::move(rest));
    }
    onHead();
    return state_ != State::kClosing && !done_;
  }
  if (req_buf_ && req_buf_.tailroom() == 0 && req_buf_.size() >= req_buf_.capacity()) {
    refuse(400, "PR");
    return false;
  }
  return false;
}

void Http1Connection::onHead() {
  http1::Error err;
  if (!http1::analyzeRequest(head_, framing_, err)) {
    logWarning("frontend \"{}\": {} from {}: {}", fe_->name, err.status, src_.toString(),
               err.reason);
    std::string_view head = req_buf_.view().substr(0, parser_.headLength());
    captureError(err, head, http1::faultOffset(err, head, head.size()));
    return refuse(err.status, "PR");
  }
  keep_alive_ = framing_.keep_alive && !draining_;
  version_minor_ = head_.version_minor;
  head_method_ = head_.method == "HEAD";
  expect_continue_ = framing_.expect_continue && version_minor_ >= 1;
  continue_sent_ = false;
  body_.reset(framing_.body, framing_.content_length);
  body_done_ = body_.done();
  body_wanted_ = false;
  bytes_ = 0;
  resp_chunked_ = chunk_open_ = false;

  Exchange::Request req;
  req.line = fmt::format("{} {} HTTP/1.{}", head_.method, head_.target, head_.version_minor);
  req.head = std::move(head_);
  head_ = HttpHead();
  req.head_bytes = std::move(req_buf_);
  switch (framing_.body) {
    case http1::BodyKind::kNone:
    case http1::BodyKind::kUntilClose:  // never for requests
      req.body = BodyLength::none();
      break;
    case http1::BodyKind::kContentLength:
      req.body = BodyLength::of(framing_.content_length);
      break;
    case http1::BodyKind::kChunked:
      req.body = BodyLength::stream();
      break;
  }
  req.upgrade = framing_.upgrade;
  req.first = first_request_;
  req.started_ms = t_req_start_;
  req.head_ms = w_.loop().now();
  req.started_wall_ms = wall_req_start_;
  state_ = State::kExchange;
  timer_->stop();  // the exchange keeps its own time
  ExchangeOrigin origin{src_, dst_, proxy_.get(), tls_.get()};
  exchange_ = std::make_unique<Exchange>(w_, wg_, fe_index_, static_cast<ClientSide&>(*this),
                                         origin, std::move(req));
  exchange_->start();  // may end the exchange (onExchangeEnd) before it returns
}

// Decodes request body bytes into payload for the exchange while it takes them.
void Http1Connection::deliverBody() {
  Buffer& front = client_in_.front();
  Buffer payload;
  size_t n;
  if (framing_.body == http1::BodyKind::kChunked) {
    struct Sink : http1::BodySink {
      Buffer* out;
      void onData(std::string_view d) override {
        if (!*out) *out = BufferPool::local().take();
        out->append(d);  // chunk payload of one read fits one buffer: it is no larger
      }
    } sink;
    sink.out = &payload;
    n = body_.feed(front.data(), front.size(), &sink);
    front.consume(n);
    if (front.empty()) client_in_.pop_front();
  } else {
    n = body_.feed(front.data(), front.size());
    if (n == front.size()) {
      payload = std::move(front);
      client_in_.pop_front();
    } else {
      payload = BufferPool::local().take();
      payload.append(front.view().substr(0, n));
      front.consume(n);
    }
  }
  if (body_.state() == http1::BodyDecoder::State::kError) {
    body_done_ = true;
    body_wanted_ = false;
    keep_alive_ = false;
    return exchange_->onRequestError(body_.error().reason);
  }
  bool done = body_.done();
  if (payload && !payload.empty()) exchange_->onRequestBody(std::move(payload));
  if (done && !body_done_ && state_ == State::kExchange && exchange_) {
    body_done_ = true;
    body_wanted_ = false;
    exchange_->onRequestEnd(body_.trailers());  // lives in body_ until the next request
  }
}

void Http1Connection::resumeRequestBody() {
  if (body_done_ || state_ != State::kExchange) return;
  body_wanted_ = true;
  client_->readStart();
  process();
}

void Http1Connection::pauseRequestBody() {
  body_wanted_ = false;
  if (!client_in_.empty()) client_->readStop();
}

void Http1Connection::continueRequest() {
  if (!expect_continue_ || continue_sent_ || body_done_) return;
  continue_sent_ = true;
  write(std::string("HTTP/1.1 100 Continue\r\n\r\n"));
}

// ---------------------------------------------------------------- writing

void Http1Connection::mustClose() {
  keep_alive_ = false;
}

void Http1Connection::sendInterimResponse(const HttpHead& head) {
  if (version_minor_ < 1) return;  // HTTP/1.0 knows no 1xx
  if (head.status == 100) continue_sent_ = true;
  std::string out;
  http1::serializeResponseHead(head, out);
  write(std::move(out));
}

std::string Http1Connection::frameHead(HttpHead& h, BodyLength body) {
  resp_chunked_ = chunk_open_ = false;
  switch (body.kind) {
    case BodyLength::Kind::kNone:
      break;  // HEAD, 1xx, 204, 304: a Content-Length there describes what GET would get
    case BodyLength::Kind::kLength:
      if (h.find("content-length") == nullptr) h.add("content-length", std::to_string(body.length));
      break;
    case BodyLength::Kind::kStream:
      h.remove("content-length");
      if (head_method_) break;
      if (version_minor_ >= 1) {
        h.add("transfer-encoding", "chunked");
        resp_chunked_ = true;
      } else {
        keep_alive_ = false;  // HTTP/1.0: the body ends when the connection does
      }
      break;
  }
  if (client_eof_ || draining_) keep_alive_ = false;
  if (h.status == 101) {
    h.add("connection", "upgrade");
  } else if (!keep_alive_) {
    h.add("connection", "close");
  } else if (version_minor_ == 0) {
    h.add("connection", "keep-alive");
  }
  int version = h.version_minor;
  h.version_minor = 1;
  std::string out;
  out.reserve(256);
  http1::serializeResponseHead(h, out);
  h.version_minor = version;
  return out;
}

void Http1Connection::sendResponseHead(HttpHead& head, BodyLength body, Buffer first) {
  std::string out = frameHead(head, body);
  if (!first || first.empty() || head_method_) return write(std::move(out));
  if (!resp_chunked_) return write(std::move(out), std::move(first));
  write(std::move(out));
  sendResponseData(std::move(first));
}

void Http1Connection::sendResponseHead(HttpHead& head, BodyLength body, Bytes first) {
  std::string out = frameHead(head, body);
  if (head_method_ || first.empty()) return write(std::move(out));
  if (resp_chunked_) {
    out.append(fmt::format("{:x}\r\n", first.size()));
    chunk_open_ = true;
  }
  // A small body goes in the head's string (one write); a large one is handed over as it
  // is (the stream keeps the string or the borrowed bytes: no copy of a big reply).
  if (first.size() <= kCoalesceBody) {
    out.append(first.view());
    return write(std::move(out));
  }
  write(std::move(out));
  write(std::move(first));
}

void Http1Connection::sendResponseData(Buffer data) {
  if (head_method_ || !data || data.empty() || client_failed_) return;
  if (!resp_chunked_) {
    bytes_ += data.size();
    return client_->write(std::move(data));
  }
  // One chunk per piece; its size line goes with the previous chunk's CRLF: one writev.
  std::string size = fmt::format("{}{:x}\r\n", chunk_open_ ? "\r\n" : "", data.size());
  chunk_open_ = true;
  write(std::move(size), std::move(data));
}

void Http1Connection::sendResponseEnd(const HttpHead* trailers) {
  if (!resp_chunked_ || client_failed_) return;
  std::string end = chunk_open_ ? "\r\n0\r\n" : "0\r\n";
  resp_chunked_ = chunk_open_ = false;
  if (trailers != nullptr) {
    for (const HeaderField& f : trailers->headers)
      end.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  end.append("\r\n");
  write(std::move(end));
}

bool Http1Connection::responseBlocked() const {
  return client_->aboveHighWater();
}

uint64_t Http1Connection::clientLastActivity() const {
  return client_->lastActivity();
}

size_t Http1Connection::clientPendingBytes() const {
  return client_->pendingBytes();
}

void Http1Connection::write(std::string s) {
  if (client_failed_) return;
  bytes_ += s.size();
  client_->write(std::move(s));
}

void Http1Connection::write(Bytes b) {
  if (client_failed_) return;
  bytes_ += b.size();
  client_->write(std::move(b));
}

void Http1Connection::write(std::string head, Buffer b) {
  if (client_failed_) return;
  bytes_ += head.size() + b.size();
  client_->write(std::move(head), std::move(b));
}

Stream* Http1Connection::startTunnel(std::deque<Buffer>& pending) {
  state_ = State::kTunnel;
  timer_->stop();
  client_->readStop();
  pending = std::move(client_in_);
  client_in_.clear();
  return client_.get();
}

// ---------------------------------------------------------------- between requests

void Http1Connection::onExchangeEnd(bool complete) {
  // The exchange is on the stack: it dies on the next loop turn.
  w_.loop().deferDelete(std::move(exchange_));
  if (state_ == State::kTunnel || client_failed_ || aborting_) return finish();
  if (!complete || !keep_alive_ || client_eof_ || !body_done_) return beginClosing();
  resetRequest();
  state_ = State::kIdle;
  keepalive_since_ = w_.loop().now();
  moveToNewest();
  armTimer();
  client_->readStart();
  process();
}

void Http1Connection::resetRequest() {
  req_buf_.release();
  parser_.reset();
  head_.clear();
  framing_ = {};
  body_done_ = true;
  body_wanted_ = false;
  keep_alive_ = true;
  first_request_ = false;
}

// The next request runs on the newest generation (DESIGN §3), in its frontend of the same
// name. A connection whose frontend the reload removed (or turned to TCP) stays on its
// generation until it closes.
void Http1Connection::moveToNewest() {
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

uint64_t Http1Connection::generationId() const {
  return wg_->gen().id();
}

void Http1Connection::onNewGeneration() {
  if (state_ == State::kIdle && client_in_.empty() && !done_) moveToNewest();
}

void Http1Connection::drain() {
  draining_ = true;
  // An exchange whose response head has not left yet still says `Connection: close`.
  if (exchange_) exchange_->drain();
}

std::string Http1Connection::describe() const {
  static const char* const kStates[] = {"idle", "head", "exchange", "tunnel", "closing"};
  uint64_t now = w_.loop().now();
  return fmt::format("proto=http gen={} fe={} src={} age={}ms state={}", wg_->gen().id(), fe_->name,
                     src_.toString(), now - t_accept_,
                     exchange_ ? exchange_->describe() : kStates[static_cast<int>(state_)]);
}

// ---------------------------------------------------------------- errors and close

// An invalid request for `show errors`: the head's bytes, the fault at `offset`.
void Http1Connection::captureError(const http1::Error& err, std::string_view bytes, size_t offset) {
  CapturedError e;
  e.request = true;
  e.proxy = fe_->name;
  e.source = src_.toString();
  e.reason = err.reason;
  e.status = err.status;
  ErrorCaptures::process().capture(std::move(e), bytes, offset);
}

// The bytes of a refusal with `status`: the frontend's error page (its own, then its
// defaults'; an error_page function gets nil for txn: there is no request to show), or
// crescent's own. Always `connection: close`.
std::string Http1Connection::refusalPage(int& status) {
  ErrorPageResult page;
  std::unique_ptr<ScriptTxn> txn;
  HttpHead none;
  RequestContext ctx{none, src_, dst_, fe_->name};
  if ((fe_->errors.hook > 0 || fe_->default_errors.hook > 0) && wg_->scripts() != nullptr)
    txn = wg_->scripts()->newTxn(ctx);
  if (!resolveErrorPage({&fe_->errors, &fe_->default_errors}, status, txn.get(), false,
                        "frontend \"" + fe_->name + "\"", page)) {
    page.status = status;
    page.headers = {{"cache-control", "no-cache"}, {"content-type", "text/html"}};
    page.body = defaultErrorBody(status);
  }
  status = page.status;
  std::string_view reason = page.reason.empty() ? http1::reasonPhrase(page.status) : page.reason;
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", page.status, reason);
  for (const auto& [n, v] : page.headers) {
    if (equalsNoCase(n, "content-length") || equalsNoCase(n, "connection") ||
        equalsNoCase(n, "transfer-encoding"))
      continue;
    fmt::format_to(std::back_inserter(out), "{}: {}\r\n", n, v);
  }
  fmt::format_to(std::back_inserter(out), "content-length: {}\r\nconnection: close\r\n\r\n",
                 page.body.size());
  out += page.body;
  return out;
}

// A request refused before any exchange: `status` (-1: the client left or timed out, no
// page) with a page and `Connection: close`, its log line, then close.
void Http1Connection::refuse(int status, const char* term) {
  uint64_t bytes = 0;
  if (status > 0 && !client_failed_) {
    std::string out = refusalPage(status);  // an error_page may change the status
    bytes = out.size();
    client_->write(std::move(out));
  }
  if (fe_->log) {
    uint64_t now = w_.loop().now();
    uint64_t start = t_req_start_ ? t_req_start_ : t_accept_;
    HttpLogLine l;
    l.src = &src_;
    l.date_ms = wall_req_start_ ? wall_req_start_ : wallClockMs();
    l.frontend = fe_->name;
    l.backend = fe_->name;
    l.server = "<NOSRV>";
    l.ta = now - start;
    l.status = status;
    l.bytes = bytes;
    l.term = term;
    l.actconn = w_.counters().actconn.load(std::memory_order_relaxed);
    l.feconn = wg_->gen().frontendStats(fe_index_).cur.load(std::memory_order_relaxed);
    logTraffic(formatHttpLog(l));
  }
  keep_alive_ = false;
  if (status > 0) beginClosing();
}

// Response written (or queued): stop accepting requests, send FIN after the queued bytes,
// and read-and-discard until the client closes or kLingerMs passes, so that unread
// client bytes do not turn our close into a reset that destroys the response.
void Http1Connection::beginClosing() {
  if (done_) return;
  state_ = State::kClosing;
  client_in_.clear();
  client_->shutdown();
  if (client_eof_ && client_->shutdownDone()) return finish();
  if (client_eof_) return armTimer();  // close once the FIN (after the response) has left
  client_->readStart();
  armTimer();
}

void Http1Connection::onStreamShutdownDone(Stream& s) {
  if (&s != client_.get() || state_ != State::kClosing) return;
  if (client_eof_) return finish();
  armTimer();  // linger: let the client read and close first
}

void Http1Connection::finish() {
  if (done_) return;
  done_ = true;
  timer_->stop();
  client_in_.clear();
  if (exchange_) {
    // Still running (a hard stop from inside the loop): it ends without a word to us.
    w_.loop().deferDelete(std::move(exchange_));
  }
  client_.reset();
  // Before endSession(): it may accept a connection that waited for this slot.
  wg_->gen().frontendStats(fe_index_).cur.fetch_sub(1, std::memory_order_relaxed);
  wg_->gen().sessionOut();
  w_.endSession(this);
}

// ---------------------------------------------------------------- timeouts

void Http1Connection::armTimer() {
  const Timeouts& t = fe_->timeout;
  uint64_t ms = 0;
  switch (state_) {
    case State::kIdle:
      ms = idleTimeout();
      break;
    case State::kHead:
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
    case State::kTunnel:
      timer_->stop();
      return;
  }
  if (ms == 0) return timer_->stop();
  timer_->start(ms);
}

uint64_t Http1Connection::idleTimeout() const {
  const Timeouts& t = fe_->timeout;
  return first_request_ ? orElse(t.http_request, t.client)
                        : orElse(t.http_keep_alive, orElse(t.http_request, t.client));
}

// A response ends when its last byte is queued, so the connection may be idle while a
// big one is still leaving. Until it is out, the client's inactivity timeout applies (as
// HAProxy's `timeout client` while it sends); the keep-alive wait starts once it is out,
// and a slow reader of a big reply is not cut.
uint64_t Http1Connection::idleWaitLeft(uint64_t now) const {
  uint64_t last = client_->lastActivity();  // the last read or completed write
  uint64_t limit = idleTimeout();
  uint64_t since = std::max(keepalive_since_, last);
  if (client_->pendingBytes() > 0) {
    if (fe_->timeout.client != 0) limit = fe_->timeout.client;
    since = last;
  }
  return now - since < limit ? limit - (now - since) : 0;
}

void Http1Connection::onTimer(void* ctx) {
  static_cast<Http1Connection*>(ctx)->checkTimeouts();
}

void Http1Connection::checkTimeouts() {
  uint64_t now = w_.loop().now();
  const Timeouts& t = fe_->timeout;
  switch (state_) {
    case State::kIdle:
      if (uint64_t left = idleWaitLeft(now); left != 0) return timer_->start(left);
      return finish();  // idle keep-alive: close quietly
    case State::kHead:
      logWarning("frontend \"{}\": 408 for {}: request head not received in time", fe_->name,
                 src_.toString());
      return refuse(408, "cR");
    case State::kClosing:
      if (client_->shutdownDone() || (t.client && now - client_->lastActivity() >= t.client))
        return finish();
      if (t.client) timer_->start(t.client - (now - client_->lastActivity()));
      return;
    case State::kExchange:
    case State::kTunnel:
      return;
  }
}

}  // namespace crescent::core
