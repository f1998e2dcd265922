// Exchange, the response side: responses crescent makes, the http_response phase,
// compression, the response body, tunnels.
#include <fmt/format.h>

#include "core/base/log.h"
#include "core/session/error_pages.h"
#include "core/session/exchange.h"

namespace crescent::core {
namespace {

bool noBodyStatus(int status) {
  return status == 204 || status == 304 || (status >= 100 && status < 200);
}

}  // namespace

// ---------------------------------------------------------------- local responses

void Exchange::sendError(int status, const char* term) {
  if (finished_) return;
  term_ = term;
  if (resp_head_sent_) return finish(term);  // too late for an error page
  if (txn_) txn_->cancel();                  // a hook that waits (a timeout) is over
  must_close_ = true;
  client_.mustClose();
  sendPage(status, {{"cache-control", "no-cache"}, {"content-type", "text/html"}},
           defaultErrorBody(status));
}

// The configured error page for `status` (errorfiles, error_page: the backend's, the
// frontend's, then the defaults'), or `headers` and `body` when there is none.
void Exchange::sendPage(int status, const std::vector<std::pair<std::string, std::string>>& headers,
                        Bytes body) {
  const BackendConfig* be = backend_ >= 0 ? &wg_->config().backends[backend_] : nullptr;
  const ErrorPages* own = be ? &be->errors : nullptr;
  const ErrorPages* defaults = be ? &be->default_errors : nullptr;
  bool lua = fe_.errors.hook > 0 || fe_.default_errors.hook > 0 ||
             (be && (own->hook > 0 || defaults->hook > 0));
  ErrorPageResult page;
  if (resolveErrorPage({own, &fe_.errors, defaults, &fe_.default_errors}, status,
                       lua ? txn() : nullptr, true, "frontend \"" + fe_.name + "\"", page)) {
    return sendLocal(page.status, page.reason, page.headers, std::move(page.body));
  }
  sendLocal(status, {}, headers, std::move(body));
}

void Exchange::sendLocal(int status, std::string_view reason,
                         const std::vector<std::pair<std::string, std::string>>& headers,
                         Bytes body) {
  if (leg_) leg_->abandon();  // a server's response (or attempt) is replaced
  if (!req_done_) {
    // The body will not be read: the connection cannot carry another request.
    must_close_ = true;
    client_.mustClose();
    client_.pauseRequestBody();
    req_done_ = true;
    body_wanted_ = false;
  }
  HttpHead& h = local_resp_;
  h.clear();
  h.status = status;
  h.version_minor = 1;
  if (!reason.empty()) h.reason = h.own(reason);
  bool has_type = false;
  for (const auto& [n, v] : headers) {
    if (equalsNoCase(n, "content-length") || equalsNoCase(n, "connection") ||
        equalsNoCase(n, "transfer-encoding"))
      continue;
    if (equalsNoCase(n, "content-type")) has_type = true;
    h.add(n, v);
  }
  if (!has_type && !body.empty()) h.add("content-type", "text/plain");
  bool no_body = noBodyStatus(status);
  if (no_body) {
    body.clear();
    resp_body_ = BodyLength::none();
  } else {
    h.add("content-length", std::to_string(body.size()));
    resp_body_ = BodyLength::of(body.size());
  }
  // A borrowed body (a hook's Lua string) holds this generation, whose Lua state owns
  // it, until the last byte is written: the exchange may end first.
  body.keepAlso(wg_);
  local_body_ = std::move(body);
  resp_ = &local_resp_;
  resp_local_ = true;
  resp_tunnel_ = false;
  resp_rest_ = Buffer();
  status_ = status;
  runResponseHooks();
}

// ---------------------------------------------------------------- http_response phase

void Exchange::onLegInterim(const HttpHead& head) {
  client_.sendInterimResponse(head);
}

void Exchange::onLegResponse(HttpHead& head, BodyLength body, bool tunnel, Buffer rest) {
  t_resp_ = w_.loop().now();
  resp_ = &head;
  resp_local_ = false;
  resp_tunnel_ = tunnel;
  resp_body_ = body;
  resp_rest_ = std::move(rest);
  status_ = head.status;
  if (tunnel) return sendResponse();  // a 101 / CONNECT 2xx is not for hooks to rewrite
  runResponseHooks();
}

// Runs the backend's, then the frontend's http_response hook on resp_ (each once per
// exchange), then sends it. A hook's txn:reply() replaces the response and ends the
// phase; a hook that fails answers 500 and no hook runs again.
void Exchange::runResponseHooks() {
  if (!resp_hooks_set_) {
    resp_hooks_set_ = true;
    if (backend_ >= 0 && wg_->config().backends[backend_].http_response_hook > 0)
      resp_hooks_.push_back(wg_->config().backends[backend_].http_response_hook);
    if (fe_.http_response_hook > 0) resp_hooks_.push_back(fe_.http_response_hook);
  }
  while (resp_hook_ < resp_hooks_.size() && !resp_hooks_failed_) {
    ScriptTxn* t = txn();
    if (t == nullptr) break;
    int id = resp_hooks_[resp_hook_++];
    phase_ = Phase::kResponseHook;
    ctx_.resp = resp_;
    decision_ = HookDecision();
    if (t->httpResponse(id, decision_, *this) == ScriptStatus::kPending) return armTimer();
    if (!applyResponseDecision()) return;
  }
  sendResponse();
}

void Exchange::onResponseHookDone() {
  if (applyResponseDecision()) runResponseHooks();
}

// True when the next hook (or the sending) should follow; false when the decision took
// the exchange elsewhere (a reply, an error).
bool Exchange::applyResponseDecision() {
  HookDecision d = std::move(decision_);
  decision_ = HookDecision();
  switch (d.kind) {
    case HookDecision::Kind::kContinue:
    case HookDecision::Kind::kUseBackend:  // refused by txn:use_backend in this phase
      return true;
    case HookDecision::Kind::kReply:
      resp_hook_ = resp_hooks_.size();  // the reply is final
      if (d.error_page) {
        sendPage(d.status, d.headers, std::move(d.body));
      } else {
        sendLocal(d.status, {}, d.headers, std::move(d.body));
      }
      return false;
    case HookDecision::Kind::kFail:
      logError("frontend \"{}\": http_response hook failed: {}", fe_.name, d.error);
      resp_hooks_failed_ = true;
      sendError(500, "PH");
      return false;
  }
  return true;
}

// ---------------------------------------------------------------- sending

void Exchange::sendResponse() {
  if (finished_) return;
  ctx_.resp = resp_;
  if (resp_tunnel_) return startTunnel();
  phase_ = Phase::kResponse;
  HttpHead& h = *resp_;
  if (resp_local_) {
    Bytes body = std::move(local_body_);
    // A Lua service's response is compressed like a server's (same rules); the whole
    // body is at hand, so the result keeps a Content-Length.
    std::string coded;
    if (backend_ >= 0 && resp_body_.kind == BodyLength::Kind::kLength &&
        compressionConfig().enabled) {
      noteRequestForCompression();
      http1::Framing framing;
      framing.body = http1::BodyKind::kContentLength;
      framing.content_length = body.size();
      compression::Verdict v = compression::decide(compressionConfig(), gz_req_, h, framing);
      if (v == compression::Verdict::kCompress &&
          compressWhole(body.view(), gz_req_.accepted, coded)) {
        compression::editResponseHead(h, gz_req_.accepted, false);
        h.add("content-length", std::to_string(coded.size()));
        resp_body_ = BodyLength::of(coded.size());
        body = std::move(coded);
      } else if (v == compression::Verdict::kNotAccepted || v == compression::Verdict::kCompress) {
        compression::addVary(h);  // another client would get it compressed
      }
    }
    resp_head_sent_ = true;
    client_.sendResponseHead(h, resp_body_, std::move(body));
    resp_done_ = true;
    return maybeFinish();
  }
  compression::Verdict gz = startCompression();
  if (encoder_) {
    compression::editResponseHead(h, encoder_->algo(), false);
    resp_body_ = BodyLength::stream();
  } else if (gz == compression::Verdict::kNotAccepted) {
    compression::addVary(h);  // another client would get it compressed
  }
  Buffer first = std::move(resp_rest_);
  size_t next = 0;
  if (encoder_ && first && !first.empty()) {
    if (!encoder_->feed(first.view(), gz_out_)) {
      logError("frontend \"{}\": zlib failed while compressing a response: response cut", fe_.name);
      return finish("PD");
    }
    first = gz_out_.empty() ? Buffer() : std::move(gz_out_[next++]);
  }
  resp_head_sent_ = true;
  client_.sendResponseHead(h, resp_body_, std::move(first));
  for (; next < gz_out_.size(); ++next) client_.sendResponseData(std::move(gz_out_[next]));
  gz_out_.clear();
  armTimer();
  if (client_.responseBlocked()) return;  // onClientDrained resumes the leg
  leg_->resumeResponse();                 // may end the exchange: last statement
}

void Exchange::onLegData(Buffer payload) {
  if (finished_) return;
  if (encoder_) {
    if (!encoder_->feed(payload.view(), gz_out_)) {
      logError("frontend \"{}\": zlib failed while compressing a response: response cut", fe_.name);
      return finish("PD");
    }
    for (Buffer& b : gz_out_) client_.sendResponseData(std::move(b));
    gz_out_.clear();
  } else {
    client_.sendResponseData(std::move(payload));
  }
  if (client_.responseBlocked()) leg_->pauseResponse();  // resumed in onClientDrained
}

void Exchange::onLegEnd(const HttpHead* trailers) {
  if (finished_) return;
  if (encoder_) {
    bool ok = encoder_->finish(gz_out_);
    for (Buffer& b : gz_out_) client_.sendResponseData(std::move(b));
    gz_out_.clear();
    encoder_.reset();
    if (!ok) {
      logError("frontend \"{}\": zlib failed while ending a compressed response", fe_.name);
      return finish("PD");
    }
  }
  client_.sendResponseEnd(trailers);
  resp_done_ = true;
  maybeFinish();
}

void Exchange::startTunnel() {
  phase_ = Phase::kTunnel;
  timer_->stop();
  resp_head_sent_ = true;
  client_.sendResponseHead(*resp_, BodyLength::none(), Buffer());
  std::deque<Buffer> from_client;
  Stream* cs = client_.startTunnel(from_client);
  std::deque<Buffer> from_server;
  tunnel_server_ = leg_->takeStream(from_server);
  if (cs == nullptr || !tunnel_server_) return finish("PR");
  // What each side sent before the tunnel reaches the other first, in order.
  if (resp_rest_ && !resp_rest_.empty()) cs->write(std::move(resp_rest_));
  for (Buffer& b : from_server) cs->write(std::move(b));
  for (Buffer& b : from_client) tunnel_server_->write(std::move(b));
  const BackendConfig& be = wg_->config().backends[backend_];
  TunnelTimeouts t = TunnelTimeouts::from(fe_.timeout, be.timeout);
  tunnel_ = std::make_unique<Tunnel>(w_.loop(), *cs, *tunnel_server_, t,
                                     static_cast<Tunnel::Owner&>(*this));
  tunnel_->start(Buffer(), Buffer());
}

// ---------------------------------------------------------------- compression

// The backend's compression settings when enabled there, else the frontend's.
const CompressionConfig& Exchange::compressionConfig() const {
  if (backend_ >= 0) {
    const CompressionConfig& be = wg_->config().backends[backend_].compression;
    if (be.enabled) return be;
  }
  return fe_.compression;
}

// Takes what the decision needs from the request head.
void Exchange::noteRequestForCompression() {
  gz_req_ = {};
  const CompressionConfig& cfg = compressionConfig();
  if (!cfg.enabled) return;
  gz_req_.accepted = compression::negotiate(req_.head, cfg.algos);
  gz_req_.head = req_.head.method == "HEAD";
  gz_req_.range = req_.head.find("range") != nullptr;
}

// Decides on the final response head (after the hooks) and, to compress, creates
// encoder_. Without an encoder the response is forwarded as it is.
compression::Verdict Exchange::startCompression() {
  encoder_.reset();
  gz_out_.clear();
  const CompressionConfig& cfg = compressionConfig();
  if (!cfg.enabled) return compression::Verdict::kDisabled;
  http1::Framing framing;
  switch (resp_body_.kind) {
    case BodyLength::Kind::kNone:
      framing.body = http1::BodyKind::kNone;
      break;
    case BodyLength::Kind::kLength:
      framing.body = http1::BodyKind::kContentLength;
      framing.content_length = resp_body_.length;
      break;
    case BodyLength::Kind::kStream:
      framing.body = http1::BodyKind::kChunked;
      break;
  }
  compression::Verdict v = compression::decide(cfg, gz_req_, *resp_, framing);
  if (v != compression::Verdict::kCompress) return v;
  encoder_ = std::make_unique<compression::Encoder>(BufferPool::local(),
                                                    compression::Encoder::Framing::kRaw);
  if (!encoder_->init(gz_req_.accepted, cfg.level)) {
    logError("frontend \"{}\": zlib could not start a {} stream: response sent uncompressed",
             fe_.name, compression::algoName(gz_req_.accepted));
    encoder_.reset();
  }
  return v;
}

// Compresses a whole body (raw framing) into `out`; false when zlib refused.
bool Exchange::compressWhole(std::string_view body, compression::Algo algo, std::string& out) {
  compression::Encoder enc(BufferPool::local(), compression::Encoder::Framing::kRaw);
  std::vector<Buffer> parts;
  if (!enc.init(algo, compressionConfig().level) || !enc.feed(body, parts) || !enc.finish(parts))
    return false;
  for (const Buffer& b : parts) out.append(b.view());
  return true;
}

}  // namespace crescent::core
