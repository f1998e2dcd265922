#include "core/backend/health_check.h"

#include "core/tls/tls_stream.h"

#include <algorithm>
#include <string>
#include <string_view>

#include "core/backend/agent_check.h"
#include "core/backend/check_io.h"
#include "core/backend/check_protocol.h"

#include "core/base/log.h"
#include "core/net/event_loop.h"
#include "core/net/stream.h"
#include "core/net/timer.h"
#include "core/proto/http1.h"
#include "core/proto/proxy_protocol.h"

namespace crescent::core {

namespace {

constexpr size_t kMaxHead = HealthChecker::kMaxHead;
constexpr size_t kMaxReply = HealthChecker::kMaxReply;

std::string errorText(int uv_error) {
  return checkErrorText(uv_error);
}

// A peer's text (a reason phrase, a script's reason) made fit for one log line.
std::string oneLine(std::string_view s, size_t max = 200) {
  std::string out(s.substr(0, max));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  if (s.size() > max) out += "...";
  return out;
}

void drainInput(Stream& s) {
  drainCheckInput(s);
}

// Keeps the first kMaxReply payload bytes of a de-chunked body.
class CappedSink : public http1::BodySink {
 public:
  explicit CappedSink(std::string& out) : out_(out) {}
  void onData(std::string_view data) override {
    size_t room = kMaxReply - std::min(kMaxReply, out_.size());
    out_.append(data.substr(0, std::min(room, data.size())));
  }

 private:
  std::string& out_;
};

// One checked server: a timer (the next check, or the running check's timeout) and, while
// a check runs, its connection. Lives on the checker's loop thread; close() disarms both
// handles (they free themselves in their close callbacks), after which it may be destroyed.
class ServerCheck final : public StreamHandler {
 public:
  ServerCheck(EventLoop& loop, Server& server, CheckScript* script, const tls::ClientContext* tls,
              uint64_t first_delay_ms);
  ~ServerCheck() override { close(); }
  ServerCheck(const ServerCheck&) = delete;
  ServerCheck& operator=(const ServerCheck&) = delete;

  /// Stops checking: closes the timer and the connection. Idempotent.
  void close();

 private:
  enum class Phase {
    kIdle,        // waiting for the next check
    kConnecting,  // connect() in progress
    kExchanging,  // connected: sending, reading the reply
  };

  const HealthCheckConfig& cfg() const { return server_.config().check; }
  bool isHttp() const { return cfg().kind == HealthCheckConfig::Kind::kHttp; }
  /// A protocol check (mysql, pgsql, redis, smtp) drives the running check.
  bool isProtocol() const { return proto_ != nullptr; }
  /// The check looks at the body (HTTP) or reads a reply (TCP): expect_body or a Lua expect.
  bool wantsReply() const { return !cfg().expect_body.empty() || cfg().expect_hook > 0; }

  static void onTimerCb(void* ctx) { static_cast<ServerCheck*>(ctx)->onTimer(); }
  void onTimer();
  void startCheck();
  void onConnected();

  void onStreamConnected(Stream& s, int status) override;
  void onStreamData(Stream& s, Buffer data) override;
  void onStreamEof(Stream& s) override;
  void onStreamError(Stream& s, int uv_error) override;
  void onStreamShutdownDone(Stream& s) override;
  void onStreamTlsReady(Stream& s, int status) override;
  // Writes the check's request (and reads, or ends a send-only check).
  void sendCheck();

  void onHttpData(std::string_view data);
  void onHttpHead();
  void onHttpBody(const char* data, size_t len);
  void onTcpData(std::string_view data);
  // A protocol check's step: writes its bytes, waits, or ends the check.
  void applyStep(CheckStep step);
  // Ends a passed protocol check whose last bytes (COM_QUIT, QUIT) were being written.
  void finishClosing() { finish(true, closing_reason_); }
  void evaluateHttp();
  void evaluateTcp();
  /// Runs the Lua expect; true when it passed, else `why` says why.
  bool runScript(int status, const HttpHead* head, std::string& why);

  /// Ends the running check: drains and closes the connection, applies the result,
  /// schedules the next check. Called from the connection's or the timer's callbacks.
  void finish(bool ok, const std::string& reason);
  void record(bool ok, const std::string& reason);
  uint64_t interval() const;

  EventLoop& loop_;
  Server& server_;
  CheckScript* script_;            // may be null
  const tls::ClientContext* tls_;  // the server's TLS, or null
  Address addr_;                   // the checked address (check.port applied)
  std::string request_;            // HTTP: the whole request; TCP: `send`
  uint64_t timeout_ms_;
  TimerPtr timer_;
  StreamPtr conn_;  // while a check runs
  Phase phase_ = Phase::kIdle;
  bool closed_ = false;
  uint64_t started_ms_ = 0;    // monotonicMs() at the start of the running check
  uint64_t started_loop_ = 0;  // loop time at the start of the running check
  int successes_ = 0;          // consecutive, counted while DOWN
  int failures_ = 0;           // consecutive, counted while UP
  // The reply of the running check.
  std::string rx_;  // HTTP: bytes up to the end of the head (head_ points into it)
  std::string body_;
  http1::HeadParser parser_{kMaxHead};
  HttpHead head_;
  bool head_done_ = false;
  http1::BodyDecoder decoder_;
  std::unique_ptr<ProtocolCheck> proto_;  // the running protocol check, or null
  bool closing_ = false;                  // proto_ passed; its last bytes are being written out
  std::string closing_reason_;            // the reason of that pass
};

ServerCheck::ServerCheck(EventLoop& loop, Server& server, CheckScript* script,
                         const tls::ClientContext* tls, uint64_t first_delay_ms)
    : loop_(loop), server_(server), script_(script), tls_(tls), addr_(server.config().address) {
  const HealthCheckConfig& c = cfg();
  if (c.port != 0 && addr_.isIp()) addr_.setPort(c.port);
  uint64_t connect = server.backend().config().timeout.connect;
  timeout_ms_ = c.timeout != 0 ? c.timeout : (connect != 0 ? std::min(c.inter, connect) : c.inter);
  if (isHttp()) {
    std::string host = !c.host.empty() ? c.host : addr_.isIp() ? addr_.toString() : "localhost";
    request_ = c.method + " " + c.uri + " HTTP/1.1\r\nHost: " + host +
               "\r\nUser-Agent: crescent-health-check\r\nConnection: close\r\n\r\n";
  } else {
    request_ = c.send;
  }
  timer_ = Timer::create(loop_, &ServerCheck::onTimerCb, this);
  timer_->start(first_delay_ms);
}

void ServerCheck::close() {
  if (closed_) return;
  closed_ = true;
  timer_.reset();
  if (conn_) drainInput(*conn_);
  conn_.reset();
}

void ServerCheck::onTimer() {
  switch (phase_) {
    case Phase::kIdle:
      if (server_.admin() == AdminState::kMaint) {
        successes_ = failures_ = 0;
        timer_->start(cfg().inter);
        return;
      }
      startCheck();
      return;
    case Phase::kConnecting:
      finish(false, "Layer4 timeout");
      return;
    case Phase::kExchanging:
      if (closing_) {
        finishClosing();
        return;
      }
      finish(false, isHttp() || wantsReply() || isProtocol() ? "Layer7 timeout" : "Layer4 timeout");
      return;
  }
}

void ServerCheck::startCheck() {
  rx_.clear();
  body_.clear();
  head_.clear();
  parser_.reset();
  head_done_ = false;
  decoder_.reset(http1::BodyKind::kNone);
  proto_ = makeProtocolCheck(cfg());
  closing_ = false;
  started_ms_ = monotonicMs();
  started_loop_ = loop_.now();
  phase_ = Phase::kConnecting;
  timer_->start(timeout_ms_);
  // The server's address as it is now: `set server B/S addr` moves the next check too.
  addr_ = server_.address();
  if (cfg().port != 0 && addr_.isIp()) addr_.setPort(cfg().port);
  conn_ = Stream::create(loop_, addr_.isUnix() ? Stream::Kind::kPipe : Stream::Kind::kTcp);
  conn_->setHandler(this);
  if (int rc = conn_->connect(addr_); rc != 0)
    finish(false, "Layer4 connection problem, info: \"" + errorText(rc) + "\"");
}

void ServerCheck::onStreamConnected(Stream&, int status) {
  if (status != 0) {
    finish(false, "Layer4 connection problem, info: \"" + errorText(status) + "\"");
    return;
  }
  onConnected();
}

void ServerCheck::onConnected() {
  phase_ = Phase::kExchanging;
  conn_->setNoDelay(true);
  // A server that expects a PROXY header gets one: LOCAL (v2) / UNKNOWN (v1), "a
  // connection the proxy made itself" (proxy-protocol.txt §2.1, §2.2).
  if (int v = server_.config().send_proxy; v == 1) {
    conn_->write(std::string("PROXY UNKNOWN\r\n"));
  } else if (v == 2) {
    if (auto h = proxy::encodeV2(proxy::Command::kLocal, nullptr, nullptr, {}); h.ok())
      conn_->write(std::move(*h));
  }
  if (tls_ != nullptr) {
    // The server speaks TLS: so does its check (the PROXY header above goes first).
    if (int rc = tls::startTls(*conn_, *tls_); rc != 0) {
      finish(false, "Layer6 invalid response, info: \"TLS: " + errorText(rc) + "\"");
      return;
    }
    return;  // onStreamTlsReady goes on
  }
  sendCheck();
}

void ServerCheck::onStreamTlsReady(Stream&, int status) {
  if (status != 0) {
    std::string why = conn_->tlsError().empty() ? errorText(status) : conn_->tlsError();
    finish(false, "Layer6 invalid response, info: \"TLS handshake failed: " + why + "\"");
    return;
  }
  sendCheck();
}

void ServerCheck::sendCheck() {
  if (isProtocol()) {
    if (std::string first = proto_->start(); !first.empty()) conn_->write(std::move(first));
    conn_->readStart();
    return;
  }
  if (isHttp()) {
    conn_->write(request_);
    conn_->readStart();
    return;
  }
  if (!request_.empty()) conn_->write(request_);
  if (wantsReply()) {
    conn_->readStart();
    return;
  }
  if (request_.empty() || conn_->pendingBytes() == 0) {
    finish(true, tls_ != nullptr ? "Layer6 check passed" : "Layer4 check passed");
    return;
  }
  conn_->shutdown();  // onStreamShutdownDone: `send` is written out
}

void ServerCheck::onStreamShutdownDone(Stream&) {
  if (isProtocol()) {
    if (closing_) finishClosing();
    return;
  }
  if (!isHttp() && !wantsReply())
    finish(true, tls_ != nullptr ? "Layer6 check passed" : "Layer4 check passed");
}

void ServerCheck::onStreamData(Stream&, Buffer data) {
  if (isProtocol()) {
    if (!closing_) applyStep(proto_->feed(data.view()));
    return;
  }
  if (isHttp())
    onHttpData(data.view());
  else
    onTcpData(data.view());
}

void ServerCheck::onStreamEof(Stream&) {
  if (isProtocol()) {
    if (closing_)
      finishClosing();
    else
      applyStep(proto_->eof());
    return;
  }
  if (!isHttp()) {
    evaluateTcp();
    return;
  }
  if (!head_done_) {
    finish(false, rx_.empty() ? "Layer7 invalid response, info: \"connection closed without a "
                                "response\""
                              : "Layer7 invalid response, info: \"connection closed inside the "
                                "response head\"");
    return;
  }
  decoder_.finish();  // what the body had is what is checked
  evaluateHttp();
}

void ServerCheck::onStreamError(Stream&, int uv_error) {
  if (closing_) {  // the pass stands: the server may close as soon as it read QUIT
    finishClosing();
    return;
  }
  finish(false, "Layer4 connection problem, info: \"" + errorText(uv_error) + "\"");
}

// --- HTTP ------------------------------------------------------------------------------

void ServerCheck::onHttpData(std::string_view data) {
  if (head_done_) {
    onHttpBody(data.data(), data.size());
    return;
  }
  rx_.append(data);
  for (;;) {
    http1::Error err;
    http1::ParseResult r = parser_.parseResponse(rx_, head_, err);
    if (r == http1::ParseResult::kIncomplete) return;
    if (r == http1::ParseResult::kError) {
      finish(false, "Layer7 invalid response, info: \"" + oneLine(err.reason) + "\"");
      return;
    }
    // An interim response (100 Continue, 103 Early Hints) is skipped; 101 is final.
    if (head_.status >= 200 || head_.status == 101) break;
    rx_.erase(0, parser_.headLength());
    parser_.reset();
  }
  head_done_ = true;
  onHttpHead();
}

void ServerCheck::onHttpHead() {
  if (!wantsReply()) {
    evaluateHttp();
    return;
  }
  http1::Framing framing;
  http1::Error err;
  if (!http1::analyzeResponse(head_, cfg().method, framing, err)) {
    finish(false, "Layer7 invalid response, info: \"" + oneLine(err.reason) + "\"");
    return;
  }
  decoder_.reset(framing.body, framing.content_length);
  size_t head_len = parser_.headLength();
  // rx_ keeps only the head from here on: head_ points into it.
  onHttpBody(rx_.data() + head_len, rx_.size() - head_len);
}

void ServerCheck::onHttpBody(const char* data, size_t len) {
  if (len > 0 && !decoder_.done()) {
    CappedSink sink(body_);
    decoder_.feed(data, len, &sink);
  }
  if (decoder_.state() == http1::BodyDecoder::State::kError) {
    finish(false, "Layer7 invalid response, info: \"" + oneLine(decoder_.error().reason) + "\"");
    return;
  }
  bool found = !cfg().expect_body.empty() && body_.find(cfg().expect_body) != std::string::npos;
  bool early = found && cfg().expect_hook == 0;
  if (decoder_.done() || body_.size() >= kMaxReply || early) evaluateHttp();
}

void ServerCheck::evaluateHttp() {
  const HealthCheckConfig& c = cfg();
  int status = head_.status;
  bool status_ok = c.expect_status.empty() ? status >= 200 && status <= 399 : false;
  for (const auto& [lo, hi] : c.expect_status)
    status_ok = status_ok || (status >= lo && status <= hi);
  if (!status_ok) {
    finish(false, fmt::format("Layer7 wrong status, code: {}, info: \"{}\"", status,
                              oneLine(head_.reason)));
    return;
  }
  if (!c.expect_body.empty() && body_.find(c.expect_body) == std::string::npos) {
    finish(false, "Layer7 response content error, info: \"expected body not found\"");
    return;
  }
  std::string why;
  if (c.expect_hook > 0 && !runScript(status, &head_, why)) {
    finish(false, "Layer7 response content error, info: \"" + oneLine(why) + "\"");
    return;
  }
  finish(true, fmt::format("Layer7 check passed, code: {}", status));
}

// --- TCP -------------------------------------------------------------------------------

void ServerCheck::onTcpData(std::string_view data) {
  size_t room = kMaxReply - std::min(kMaxReply, body_.size());
  body_.append(data.substr(0, std::min(room, data.size())));
  const std::string& want = cfg().expect_body;
  // Without expect_body the first bytes received are the reply.
  if (want.empty() || body_.find(want) != std::string::npos || body_.size() >= kMaxReply)
    evaluateTcp();
}

void ServerCheck::evaluateTcp() {
  const HealthCheckConfig& c = cfg();
  if (!c.expect_body.empty() && body_.find(c.expect_body) == std::string::npos) {
    finish(false, body_.empty()
                      ? "Layer7 response content error, info: \"connection closed without a reply\""
                      : "Layer7 response content error, info: \"expected reply not found\"");
    return;
  }
  std::string why;
  if (c.expect_hook > 0 && !runScript(0, nullptr, why)) {
    finish(false, "Layer7 response content error, info: \"" + oneLine(why) + "\"");
    return;
  }
  finish(true, "Layer7 check passed");
}

bool ServerCheck::runScript(int status, const HttpHead* head, std::string& why) {
  if (script_ == nullptr) {
    why = "no Lua state to run the expect function";
    return false;
  }
  CheckResponse res;
  res.status = status;
  res.head = head;
  res.body = body_;
  res.elapsed_ms = monotonicMs() - started_ms_;
  return script_->runCheckExpect(cfg().expect_hook, res, server_, why);
}

// --- protocol checks -------------------------------------------------------------------

void ServerCheck::applyStep(CheckStep step) {
  if (!step.send.empty()) conn_->write(std::move(step.send));
  switch (step.verdict) {
    case CheckStep::Verdict::kMore:
      return;
    case CheckStep::Verdict::kFail:
      finish(false, step.reason);
      return;
    case CheckStep::Verdict::kPass:
      if (conn_->pendingBytes() == 0) {
        finish(true, step.reason);
        return;
      }
      // The goodbye (COM_QUIT, Terminate, QUIT) goes out before the close.
      closing_ = true;
      closing_reason_ = std::move(step.reason);
      conn_->shutdown();
      return;
  }
}

// --- results ---------------------------------------------------------------------------

void ServerCheck::finish(bool ok, const std::string& reason) {
  uint64_t duration = monotonicMs() - started_ms_;
  if (conn_) drainInput(*conn_);  // just before close: libuv closes the fd in uv_close
  conn_.reset();
  proto_.reset();
  closing_ = false;
  phase_ = Phase::kIdle;
  record(ok, fmt::format("{}, check duration: {}ms", reason, duration));
  // A check starts every interval; one that took longer is followed at once.
  uint64_t elapsed = loop_.now() - started_loop_;
  uint64_t next = interval();
  timer_->start(elapsed >= next ? 0 : next - elapsed);
}

void ServerCheck::record(bool ok, const std::string& reason) {
  const HealthCheckConfig& c = cfg();
  const std::string& be = server_.backend().name();
  logDebug("health check for server {}/{} {}, reason: {}", be, server_.name(),
           ok ? "succeeded" : "failed", reason);
  if (server_.healthUp()) {
    successes_ = 0;
    if (ok) {
      failures_ = 0;
      return;
    }
    server_.countCheckFailure();
    if (++failures_ >= c.fall) {
      failures_ = 0;
      server_.setUp(false, reason);
      return;
    }
    logInfo("Health check for server {}/{} failed, reason: {}, status: {}/{} UP.", be,
            server_.name(), reason, c.fall - failures_, c.fall);
    return;
  }
  failures_ = 0;
  if (!ok) {
    successes_ = 0;
    return;
  }
  if (++successes_ >= c.rise) {
    successes_ = 0;
    if (!server_.setUp(true, reason) && !server_.agentUp()) {
      logInfo(
          "Health check for server {}/{} is UP, reason: {}; the server stays DOWN: its "
          "agent says down.",
          be, server_.name(), reason);
    }
    return;
  }
  logInfo("Health check for server {}/{} succeeded, reason: {}, status: {}/{} DOWN.", be,
          server_.name(), reason, successes_, c.rise);
}

uint64_t ServerCheck::interval() const {
  const HealthCheckConfig& c = cfg();
  uint64_t fast = c.fastinter != 0 ? c.fastinter : c.inter;
  uint64_t down = c.downinter != 0 ? c.downinter : c.inter;
  if (server_.healthUp()) return failures_ > 0 ? fast : c.inter;
  return successes_ > 0 ? fast : down;
}

}  // namespace

// --- HealthChecker -----------------------------------------------------------------------

struct HealthChecker::Impl {
  std::vector<Backend*> backends;
  std::unique_ptr<CheckScript> script;         // used and destroyed on the checker thread
  TlsOf tls_of;                                // called in start(), on the owner thread
  std::vector<const tls::ClientContext*> tls;  // per checked server, in run()'s order
  EventLoop loop;
  std::thread thread;
  std::vector<std::unique_ptr<ServerCheck>> checks;  // checker thread only
  std::vector<std::unique_ptr<AgentCheck>> agents;   // checker thread only
  bool started = false;                              // owner thread only
  bool stopped = false;                              // owner thread only

  void run();
};

void HealthChecker::Impl::run() {
  for (Backend* b : backends) {
    std::vector<Server*> checked;
    for (auto& s : b->servers())
      if (s->config().check.enabled) checked.push_back(s.get());
    for (size_t i = 0; i < checked.size(); ++i) {
      // Spread a backend's checks over the interval (HAProxy's start spreading).
      uint64_t delay = checked[i]->config().check.inter * i / checked.size();
      const tls::ClientContext* ctx = tls.empty() ? nullptr : tls[checks.size()];
      checks.push_back(std::make_unique<ServerCheck>(loop, *checked[i], script.get(), ctx, delay));
    }
    std::vector<Server*> with_agent;
    for (auto& s : b->servers())
      if (s->config().agent.enabled) with_agent.push_back(s.get());
    for (size_t i = 0; i < with_agent.size(); ++i) {
      uint64_t delay = with_agent[i]->config().agent.inter * i / with_agent.size();
      agents.push_back(std::make_unique<AgentCheck>(loop, *with_agent[i], delay));
    }
  }
  loop.run();  // until stop() closed every check
  checks.clear();
  agents.clear();
  if (loop.close() != 0) logError("health checks: event loop closed with handles still open");
  script.reset();
}

HealthChecker::HealthChecker(std::vector<Backend*> backends, std::unique_ptr<CheckScript> script,
                             TlsOf tls_of)
    : impl_(std::make_unique<Impl>()) {
  impl_->backends = std::move(backends);
  impl_->script = std::move(script);
  impl_->tls_of = std::move(tls_of);
}

HealthChecker::~HealthChecker() {
  stop();
}

bool HealthChecker::wanted(const std::vector<Backend*>& backends) {
  for (Backend* b : backends)
    for (auto& s : b->servers())
      if (s->config().check.enabled || s->config().agent.enabled) return true;
  return false;
}

void HealthChecker::start() {
  if (impl_->started || impl_->stopped) return;
  impl_->started = true;
  // The servers' TLS contexts, asked here on the owner thread, in run()'s order.
  if (impl_->tls_of) {
    for (Backend* b : impl_->backends)
      for (auto& s : b->servers())
        if (s->config().check.enabled) impl_->tls.push_back(impl_->tls_of(*s));
  }
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

void HealthChecker::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  if (!impl_->started) return;
  Impl* impl = impl_.get();
  // Runs on the checker thread: with every handle closing, loop.run() returns.
  impl->loop.post([impl] {
    for (auto& c : impl->checks) c->close();
    for (auto& a : impl->agents) a->close();
  });
  impl->thread.join();
}

}  // namespace crescent::core
