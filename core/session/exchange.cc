// Exchange, the request side and the exchange's life: the http_request phase, routing,
// Lua services, the server leg, timeouts, the end and the log.
#include "core/session/exchange.h"

#include "core/session/body_budget.h"

#include <fmt/format.h>

#include "core/base/log.h"
#include "core/session/builtin_service.h"
#include "core/session/error_pages.h"
#include "core/session/routing.h"
#include "core/session/traffic_log.h"

namespace crescent::core {
namespace {

uint64_t orElse(uint64_t v, uint64_t fallback) {
  return v != 0 ? v : fallback;
}

}  // namespace

Exchange::Exchange(WorkerContext& w, std::shared_ptr<WorkerGeneration> wg, size_t fe_index,
                   ClientSide& client, const ExchangeOrigin& origin, Request req)
    : w_(w),
      wg_(std::move(wg)),
      fe_index_(fe_index),
      fe_(wg_->config().frontends[fe_index]),
      client_(client),
      origin_(origin),
      req_(std::move(req)),
      ctx_{req_.head, origin_.src, origin_.dst, fe_.name},
      timer_(Timer::create(w.loop(), &Exchange::onTimer, this)) {
  ctx_.proxy = origin_.proxy;
  ctx_.tls = origin_.tls;
  req_done_ = req_.body.empty();
}

Exchange::~Exchange() {
  // A connection that dies with its exchange still running (its destructor): nothing is
  // reported any more, but what is held goes back.
  if (txn_) txn_->cancel();
  tunnel_.reset();
  leg_.reset();
  releaseServiceBody();
  if (backend_ >= 0) wg_->gen().backend(backend_).release();
}

ScriptTxn* Exchange::txn() {
  if (!txn_made_) {
    txn_made_ = true;
    if (ScriptRunner* s = wg_->scripts()) txn_ = s->newTxn(ctx_);
  }
  return txn_.get();
}

// ---------------------------------------------------------------- request phases

void Exchange::start() {
  wg_->gen().frontendStats(fe_index_).requests.fetch_add(1, std::memory_order_relaxed);
  if (fe_.admin) return runBuiltinService();
  if (fe_.http_request_hook > 0 && txn() != nullptr) return runRequestHook();
  AclSample sample{&req_.head, &origin_.src, &origin_.dst};
  route(selectBackend(fe_, sample));
}

void Exchange::runRequestHook() {
  phase_ = Phase::kRequestHook;
  decision_ = HookDecision();
  if (txn_->httpRequest(fe_.http_request_hook, decision_, *this) == ScriptStatus::kPending)
    return armTimer();  // onScriptDone
  onRequestHookDone();
}

void Exchange::onScriptDone() {
  switch (phase_) {
    case Phase::kRequestHook:
      return onRequestHookDone();
    case Phase::kService:
      return onServiceDone();
    case Phase::kResponseHook:
      return onResponseHookDone();
    default:
      return;  // a balancer's pick reports to its ServerDispatch, not here
  }
}

void Exchange::onRequestHookDone() {
  HookDecision d = std::move(decision_);
  decision_ = HookDecision();
  switch (d.kind) {
    case HookDecision::Kind::kContinue: {
      AclSample sample{&req_.head, &origin_.src, &origin_.dst};
      return route(selectBackend(fe_, sample));
    }
    case HookDecision::Kind::kReply:
      if (d.error_page) return sendPage(d.status, d.headers, std::move(d.body));
      return sendLocal(d.status, {}, d.headers, std::move(d.body));
    case HookDecision::Kind::kFail:
      logError("frontend \"{}\": http_request hook failed: {}", fe_.name, d.error);
      return sendError(500, "PR");
    case HookDecision::Kind::kUseBackend: {
      int backend = wg_->config().findBackend(d.backend);
      if (backend < 0) {
        logError("frontend \"{}\": http_request hook chose unknown backend \"{}\"", fe_.name,
                 d.backend);
        return sendError(503, "PR");
      }
      return route(backend);
    }
  }
}

void Exchange::route(int backend) {
  if (backend < 0) return sendError(503, "SC");
  backend_ = backend;
  wg_->gen().backend(backend).acquire();
  if (wg_->config().backends[backend].service_hook > 0) return startService();
  startServerLeg();
}

void Exchange::startService() {
  phase_ = Phase::kServiceBody;
  if (txn() == nullptr) return sendError(500, "PR");
  releaseServiceBody();
  const GlobalConfig& g = wg_->config().global;
  if (req_.body.kind == BodyLength::Kind::kLength && req_.body.length > g.max_service_body) {
    logWarning("backend \"{}\": 413: request body of {} bytes, above tune.max_service_body",
               wg_->config().backends[backend_].name, req_.body.length);
    return sendError(413, "PR");
  }
  if (req_done_) return runService();
  client_.continueRequest();
  body_wanted_ = true;
  armTimer();
  client_.resumeRequestBody();  // may deliver the body and run the service at once
}

void Exchange::runService() {
  phase_ = Phase::kService;
  service_resp_ = ServiceResponse();
  const BackendConfig& be = wg_->config().backends[backend_];
  if (txn_->service(be.service_hook, service_body_, service_resp_, *this) == ScriptStatus::kPending)
    return armTimer();  // onScriptDone
  onServiceDone();
}

// The admin listener's frontend has no hooks and no backends: its built-in service
// answers every request (a body, never read, closes the connection after the answer).
void Exchange::runBuiltinService() {
  phase_ = Phase::kService;
  BuiltinService* svc = w_.builtinService();
  if (svc == nullptr) return sendError(503, "PR");
  ServiceResponse r;
  svc->serve({req_.head, *fe_.admin, w_, origin_.src, fe_.name}, r);
  t_resp_ = w_.loop().now();
  if (r.status == 404) return sendPage(404, {{"content-type", "text/html"}}, defaultErrorBody(404));
  sendLocal(r.status, r.reason, r.headers, std::move(r.body));
}

// Frees the gathered body and gives its bytes back to the process's budget.
void Exchange::releaseServiceBody() {
  std::string().swap(service_body_);
  if (service_reserved_ > 0) BodyBudget::process().release(service_reserved_);
  service_reserved_ = 0;
}

void Exchange::onServiceDone() {
  releaseServiceBody();
  ServiceResponse r = std::move(service_resp_);
  service_resp_ = ServiceResponse();
  if (!r.ok) {
    logError("backend \"{}\": service failed: {}", wg_->config().backends[backend_].name, r.error);
    return sendError(500, "PR");
  }
  t_resp_ = w_.loop().now();
  sendLocal(r.status, r.reason, r.headers, std::move(r.body));
}

void Exchange::startServerLeg() {
  phase_ = Phase::kServer;
  const BackendConfig& be = wg_->config().backends[backend_];
  noteRequestForCompression();
  ServerLeg::Origin o{&origin_.src, &origin_.dst, origin_.proxy, origin_.tls};
  leg_ = std::make_unique<ServerLeg>(w_, wg_, static_cast<size_t>(backend_),
                                     static_cast<ServerLeg::Owner&>(*this), o);
  armTimer();
  ScriptTxn* t = be.lua_balancer.enabled() ? txn() : nullptr;
  // http_reuse "safe" (HAProxy's default): a client connection's first request, and one
  // with a body, on a connection of its own, so that a server closing an idle connection
  // under it cannot lose a request the client would not know to resend.
  bool may_reuse = be.http_reuse == HttpReuse::kAlways ||
                   (be.http_reuse == HttpReuse::kSafe && !req_.first && req_.body.empty());
  leg_->start(req_.head, req_.body, req_.upgrade, fe_.forwardfor || be.forwardfor, may_reuse, t);
}

void Exchange::onLegReady() {
  armTimer();
  if (req_done_) return;
  body_wanted_ = true;
  client_.resumeRequestBody();  // body bytes that arrived with the head, or while connecting
}

void Exchange::onLegDrained() {
  if (body_wanted_ && !req_done_) client_.resumeRequestBody();
}

// ---------------------------------------------------------------- request body

void Exchange::onRequestBody(Buffer payload) {
  if (finished_ || req_done_) return;
  if (phase_ == Phase::kServiceBody) {
    const GlobalConfig& g = wg_->config().global;
    if (service_body_.size() + payload.size() > g.max_service_body) {
      logWarning("backend \"{}\": 413: request body above tune.max_service_body ({} bytes)",
                 wg_->config().backends[backend_].name, g.max_service_body);
      return sendError(413, "PR");
    }
    if (!BodyBudget::process().reserve(payload.size(), g.body_budget)) {
      logWarning(
          "backend \"{}\": 503: request bodies held in memory reached tune.body_budget "
          "({} bytes)",
          wg_->config().backends[backend_].name, g.body_budget);
      return sendError(503, "PR");
    }
    service_reserved_ += payload.size();
    service_body_.append(payload.view());
    return;
  }
  if (!leg_ || !leg_->connected()) return;  // a response was sent: the body is dropped
  leg_->sendBody(std::move(payload));
  if (leg_->requestBlocked()) client_.pauseRequestBody();  // resumed in onLegDrained
}

void Exchange::onRequestEnd(const HttpHead* trailers) {
  if (finished_ || req_done_) return;
  req_done_ = true;
  body_wanted_ = false;
  if (phase_ == Phase::kServiceBody) return runService();
  if (leg_) leg_->endBody(trailers);
  maybeFinish();
}

void Exchange::onRequestError(const std::string& reason) {
  if (finished_) return;
  logWarning("frontend \"{}\": 400 from {}: {}", fe_.name, origin_.src.toString(), reason);
  req_done_ = true;
  body_wanted_ = false;
  if (!resp_head_sent_) return sendError(400, "PR");
  finish("PD");
}

// ---------------------------------------------------------------- client events

void Exchange::onClientEof() {
  if (finished_) return;
  switch (phase_) {
    case Phase::kRequestHook:
    case Phase::kService:
      // Nobody is left to answer: the hook's wait is cancelled with the exchange.
      return finish("CR");
    case Phase::kServiceBody:
      return finish("CR");
    case Phase::kServer:
      // A client that leaves while its request waits in a queue (or for the balancer)
      // leaves at once; one that half-closes after its request still gets the response.
      if (leg_ && !leg_->connected()) return finish(leg_->queued() ? "CQ" : "CR");
      if (!req_done_) return finish(resp_head_sent_ ? "CD" : "CR");
      return;
    case Phase::kResponseHook:
      return finish("CR");
    case Phase::kResponse:
      if (!req_done_) return finish("CD");
      return;
    case Phase::kTunnel:
    case Phase::kDone:
      return;
  }
}

void Exchange::onClientError() {
  if (finished_ || phase_ == Phase::kTunnel) return;
  finish(resp_head_sent_ || phase_ == Phase::kService ? "CD" : "CR");
}

void Exchange::onClientDrained() {
  if (finished_) return;
  if (leg_ && resp_head_sent_ && !resp_done_) leg_->resumeResponse();
}

void Exchange::abort(const char* term) {
  finish(term);
}

void Exchange::drain() {
  if (!resp_head_sent_) client_.mustClose();
}

void Exchange::onLegFailed(int status, const char* term, bool) {
  if (finished_) return;
  if (resp_head_sent_) return finish(term);  // the response is cut: the client side closes
  if (term[0] == 'C' || term[0] == 'c') return finish(term);
  if (status == 504) {
    logWarning("backend \"{}\": 504: server \"{}\" did not answer in time",
               wg_->config().backends[backend_].name,
               leg_ && leg_->server() ? leg_->server()->name() : "?");
  }
  sendError(status, term);
}

// ---------------------------------------------------------------- the end

void Exchange::maybeFinish() {
  if (req_done_ && resp_done_ && phase_ == Phase::kResponse) finish(nullptr);
}

void Exchange::finish(const char* term) {
  if (finished_) return;
  finished_ = true;
  if (term != nullptr) term_ = term;
  Phase was = phase_;
  phase_ = Phase::kDone;
  timer_->stop();
  if (txn_) txn_->cancel();  // a phase that waits: nobody is left to hear it
  writeLog();
  releaseServiceBody();
  bool complete = req_done_ && resp_done_ && was == Phase::kResponse && term_ == "--";
  encoder_.reset();
  tunnel_.reset();
  tunnel_server_.reset();
  leg_.reset();  // pools the server connection when reusable; releases the slot
  if (backend_ >= 0) {
    wg_->gen().backend(backend_).release();
    backend_ = -1;
  }
  txn_.reset();
  client_.onExchangeEnd(complete);  // may schedule our deletion: last statement
}

void Exchange::onTunnelEnd(TunnelEnd why) {
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

std::string Exchange::describe() const {
  static const char* const kPhases[] = {"http_request",  "service",  "service", "server",
                                        "http_response", "response", "tunnel",  "done"};
  const char* what = kPhases[static_cast<int>(phase_)];
  if (phase_ == Phase::kServer && leg_) what = leg_->stateName();
  Server* s = leg_ ? leg_->server() : nullptr;
  return fmt::format(
      "{}{}", what,
      s != nullptr ? fmt::format(" srv={}/{}", s->backend().name(), s->name()) : std::string());
}

// ---------------------------------------------------------------- timeouts

// One timer for the exchange's own bounds. Connecting and queueing are bounded by the
// Connector's and the dispatch's timers; a tunnel by its own.
void Exchange::armTimer() {
  const Timeouts& t = fe_.timeout;
  uint64_t server = backend_ >= 0 ? wg_->config().backends[backend_].timeout.server : 0;
  uint64_t ms = 0;
  switch (phase_) {
    case Phase::kRequestHook:
    case Phase::kServiceBody:
      ms = t.client;
      break;
    case Phase::kService:
    case Phase::kResponseHook:
      ms = orElse(server, t.client);
      break;
    case Phase::kServer:
      if (leg_ && !leg_->connected()) {
        if (leg_->queued()) {
          timer_->stop();
          return;
        }
        ms = t.client;  // a Lua pick that waits, or the connector (which times itself)
        break;
      }
      [[fallthrough]];
    case Phase::kResponse:
      ms = t.client;
      if (server != 0 && (ms == 0 || server < ms)) ms = server;
      break;
    case Phase::kTunnel:
    case Phase::kDone:
      timer_->stop();
      return;
  }
  if (ms == 0) return timer_->stop();
  timer_->start(ms);
}

void Exchange::onTimer(void* ctx) {
  static_cast<Exchange*>(ctx)->checkTimeouts();
}

void Exchange::checkTimeouts() {
  uint64_t now = w_.loop().now();
  const Timeouts& t = fe_.timeout;
  const BackendConfig* be = backend_ >= 0 ? &wg_->config().backends[backend_] : nullptr;
  uint64_t server = be != nullptr ? be->timeout.server : 0;
  switch (phase_) {
    case Phase::kRequestHook:
      logWarning("frontend \"{}\": 504: http_request hook still waiting after {} ms", fe_.name,
                 t.client);
      return sendError(504, "PR");
    case Phase::kService:
      logWarning("backend \"{}\": 504: service still waiting after {} ms", be->name,
                 orElse(server, t.client));
      return sendError(504, "PR");
    case Phase::kResponseHook:
      logWarning("frontend \"{}\": 504: http_response hook still waiting after {} ms", fe_.name,
                 orElse(server, t.client));
      resp_hooks_failed_ = true;
      return sendError(504, "PH");
    case Phase::kServiceBody:
      if (t.client && now - client_.clientLastActivity() >= t.client) return sendError(408, "cD");
      break;
    case Phase::kServer:
      if (leg_ && !leg_->connected()) {
        if (leg_->queued()) return;
        logWarning("backend \"{}\": 504: balancer still picking after {} ms", be->name, t.client);
        return sendError(504, "PR");
      }
      [[fallthrough]];
    case Phase::kResponse: {
      if (server && leg_ && leg_->connected() && now - leg_->lastActivity() >= server) {
        if (!resp_head_sent_) {
          logWarning("backend \"{}\": 504: server \"{}\" did not answer in time", be->name,
                     leg_->server() ? leg_->server()->name() : "?");
          return sendError(504, "sH");
        }
        return finish("sD");
      }
      if (t.client && now - client_.clientLastActivity() >= t.client) {
        bool waiting_on_client =
            !req_done_ || (resp_head_sent_ && client_.clientPendingBytes() > 0);
        if (waiting_on_client) return finish(resp_head_sent_ ? "cD" : "cR");
      }
      break;
    }
    case Phase::kTunnel:
    case Phase::kDone:
      return;
  }
  // Not expired: activity moved the deadline. Re-arm for what is left.
  NextDeadline next(now);
  next.consider(client_.clientLastActivity(), t.client);
  if (leg_ && leg_->connected()) next.consider(leg_->lastActivity(), server);
  if (next.ms()) timer_->start(next.ms());
}

// ---------------------------------------------------------------- log

void Exchange::writeLog() {
  if (!fe_.log) return;
  uint64_t now = w_.loop().now();
  uint64_t start = req_.started_ms;
  int64_t tq = req_.head_ms ? static_cast<int64_t>(req_.head_ms - start) : -1;
  Server* srv = leg_ ? leg_->server() : nullptr;
  int64_t tw = leg_ && leg_->connectStartMs() ? static_cast<int64_t>(leg_->queueMs()) : -1;
  int64_t tc = leg_ && leg_->connectedMs()
                   ? static_cast<int64_t>(leg_->connectedMs() - leg_->connectStartMs())
                   : -1;
  uint64_t from = leg_ && leg_->connectedMs() ? leg_->connectedMs() : req_.head_ms;
  int64_t tr = (t_resp_ && from) ? static_cast<int64_t>(t_resp_ - std::min(from, t_resp_)) : -1;
  const BackendConfig* be = backend_ >= 0 ? &wg_->config().backends[backend_] : nullptr;
  std::string_view be_name = be != nullptr ? be->name : fe_.name;
  std::string_view sv = srv != nullptr                            ? std::string_view(srv->name())
                        : (be != nullptr && be->service_hook > 0) ? "<service>"
                        : fe_.admin                               ? "<STATS>"
                                                                  : "<NOSRV>";
  int retries = leg_ ? leg_->retries() : 0;
  uint64_t bytes = client_.responseBytes();
  HttpLogLine l;
  l.src = &origin_.src;
  l.date_ms = req_.started_wall_ms ? req_.started_wall_ms : wallClockMs();
  l.frontend = fe_.name;
  l.backend = be_name;
  l.server = sv;
  l.tq = tq;
  l.tw = tw;
  l.tc = tc;
  l.tr = tr;
  l.ta = now - start;
  l.status = status_;
  l.bytes = bytes;
  l.term = term_;
  l.actconn = w_.counters().actconn.load(std::memory_order_relaxed);
  l.feconn = wg_->gen().frontendStats(fe_index_).cur.load(std::memory_order_relaxed);
  l.beconn = backend_ >= 0 ? wg_->gen().backend(backend_).current() : 0;
  l.srv_conn = srv != nullptr ? srv->current() : 0;
  l.retries = retries;
  l.srv_queue = srv != nullptr ? srv->queued() : 0;
  l.be_queue = backend_ >= 0 ? wg_->gen().backend(backend_).queued() : 0;
  l.request = req_.line;
  std::string line = formatHttpLog(l);
  if (fe_.log_hook > 0 && txn() != nullptr) {
    LogInfo info;
    info.line = line;
    info.backend = be_name;
    info.server = sv;
    info.tq = tq;
    info.tw = tw;
    info.tc = tc;
    info.tr = tr;
    info.ta = static_cast<int64_t>(now - start);
    info.status = status_;
    info.bytes_out = bytes;
    info.termination = std::string_view(term_).substr(0, 2);
    info.retries = retries;
    LogDecision d;
    txn_->log(fe_.log_hook, info, d);
    if (!d.error.empty()) logError("frontend \"{}\": log hook failed: {}", fe_.name, d.error);
    if (d.kind == LogDecision::Kind::kSuppress) return;
    if (d.kind == LogDecision::Kind::kReplace) return logTraffic(d.line);
  }
  logTraffic(line);
}

}  // namespace crescent::core
