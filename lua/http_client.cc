// crescent.http.request{ method, url, headers, body, timeout, ... } -> res, or nil, err:
// an HTTP/1.1 client for hooks (an auth sub-request, a webhook) on the worker's loop,
// over the state's keepalive pool, with crescent's own TLS (verification on by default).
#include <lua.hpp>

#include <fmt/format.h>

#include <string>

#include "core/proto/http1.h"
#include "core/tls/tls_stream.h"
#include "lua/dialer.h"
#include "lua/http_util.h"
#include "lua/lua_util.h"
#include "lua/socket_binding.h"

namespace crescent::lua {
namespace {

constexpr uint64_t kDefaultTimeoutMs = 60000;
constexpr size_t kDefaultMaxBody = 64 * 1024 * 1024;
constexpr size_t kMaxHead = 64 * 1024;
constexpr uint64_t kPoolIdleMs = 60000;
constexpr size_t kPoolSize = 30;

struct Request {
  std::string method = "GET";
  bool https = false;
  DialTarget target;
  std::string host_header;  // authority as given
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool has_body = false;
  uint64_t timeout_ms = kDefaultTimeoutMs;
  size_t max_body = kDefaultMaxBody;
  bool keepalive = true;
  bool verify = true;
  std::string ca;
};

void pushResponseHeaders(lua_State* L, const core::HttpHead& head);

// One request in flight: dial (or reuse), TLS, send, read. The coroutine waits on it.
class HttpCall final : public Wait, private Dialer::Owner, private core::StreamHandler {
 public:
  HttpCall(CoroutineHost& host, Coroutine& co, Request req)
      : host_(host), co_(&co), req_(std::move(req)), parser_(kMaxHead) {}
  ~HttpCall() override {
    if (stream_ && host_.sockets != nullptr) host_.sockets->closed();
  }

  void start() {
    timer_ = core::Timer::create(*host_.loop, &HttpCall::onTimer, this);
    if (req_.timeout_ms > 0) timer_->start(req_.timeout_ms);
    dial();
  }
  void cancelWait() override { delete this; }

 private:
  void dial() {
    dialer_ = std::make_unique<Dialer>(host_, static_cast<Dialer::Owner&>(*this));
    dialer_->start(req_.target, 0);  // the call's own timer bounds everything
  }

  void onDialed(core::StreamPtr s, bool reused, const std::string& error) override {
    dialer_.reset();
    if (!s) return fail(error);
    stream_ = std::move(s);
    host_.sockets->opened();
    reused_ = reused;
    stream_->setHandler(this);
    if (req_.https && !reused) {
      std::string err;
      std::string ip = isIpLiteral(req_.target.host) ? req_.target.host : std::string();
      const core::tls::ClientContext* ctx =
          host_.sockets->tlsContext(req_.verify, req_.ca, ip, err);
      if (ctx == nullptr) return fail(err);
      int rc = core::tls::startTls(*stream_, *ctx, ip.empty() ? req_.target.host : std::string());
      if (rc != 0) return fail(std::string("TLS: ") + uv_strerror(rc));
      return;  // onStreamTlsReady
    }
    sendRequest();
  }

  void onStreamTlsReady(core::Stream& s, int status) override {
    if (status != 0) return fail("TLS handshake failed: " + s.tlsError());
    sendRequest();
  }

  static bool isIpLiteral(const std::string& h) {
    auto a = core::Address::parse((h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":1");
    return a.ok() && a->isIp();
  }

  void sendRequest() {
    std::string out = fmt::format("{} {} HTTP/1.1\r\n", req_.method, req_.path);
    bool host = false, length = false, agent = false;
    for (const auto& [n, v] : req_.headers) {
      host = host || core::equalsNoCase(n, "host");
      length = length || core::equalsNoCase(n, "content-length");
      agent = agent || core::equalsNoCase(n, "user-agent");
      out.append(n).append(": ").append(v).append("\r\n");
    }
    if (!host) out.append("Host: ").append(req_.host_header).append("\r\n");
    if (!agent) out.append("User-Agent: crescent\r\n");
    if (!length && (req_.has_body || req_.method == "POST" || req_.method == "PUT"))
      out.append(fmt::format("Content-Length: {}\r\n", req_.body.size()));
    if (!req_.keepalive) out.append("Connection: close\r\n");
    out.append("\r\n");
    out.append(req_.body);
    stream_->write(std::move(out));
    stream_->readStart();
  }

  void onStreamData(core::Stream&, core::Buffer data) override {
    got_bytes_ = true;
    std::string_view in = data.view();
    if (!head_done_) {
      head_buf_.append(in);
      core::http1::Error err;
      for (;;) {
        auto r = parser_.parseResponse(head_buf_, head_, err);
        if (r == core::http1::ParseResult::kIncomplete) {
          if (head_buf_.size() >= kMaxHead) return fail("response head too large");
          return;
        }
        if (r == core::http1::ParseResult::kError) return fail("invalid response: " + err.reason);
        size_t len = parser_.headLength();
        if (head_.status >= 100 && head_.status < 200 && head_.status != 101) {
          head_buf_.erase(0, len);  // an interim response: the final one follows
          parser_.reset();
          head_.clear();
          continue;
        }
        break;
      }
      if (!core::http1::analyzeResponse(head_, req_.method, framing_, err))
        return fail("invalid response: " + err.reason);
      if (head_.status == 101) return fail("the server switched protocols");
      head_done_ = true;
      body_.reset(framing_.body, framing_.content_length);
      size_t len = parser_.headLength();
      rest_ = head_buf_.substr(len);
      head_buf_.resize(len);  // the head's views point here: it stays as it is
      in = rest_;
      if (body_.done()) return succeed(in.size());
    }
    feedBody(in);
  }

  void feedBody(std::string_view in) {
    struct Sink : core::http1::BodySink {
      std::string* out;
      void onData(std::string_view d) override { out->append(d); }
    } sink;
    sink.out = &resp_body_;
    size_t n = body_.feed(in.data(), in.size(), &sink);
    if (body_.state() == core::http1::BodyDecoder::State::kError)
      return fail("invalid response body: " + body_.error().reason);
    if (resp_body_.size() > req_.max_body) return fail("response body too large");
    if (body_.done()) succeed(in.size() - n);
  }

  void onStreamEof(core::Stream&) override {
    if (!head_done_) {
      if (retryable()) return retry();
      return fail("closed");
    }
    body_.finish();
    if (body_.done()) return succeed(0);
    fail("closed before the end of the response");
  }

  void onStreamError(core::Stream&, int err) override {
    if (!head_done_ && retryable()) return retry();
    fail(err == UV_ECONNRESET ? "connection reset by peer" : uv_strerror(err));
  }

  // A pooled connection the server closed as we reused it: once more on a fresh one,
  // for methods that may be repeated (RFC 9110 §9.2.2).
  bool retryable() const {
    const std::string& m = req_.method;
    return reused_ && !retried_ && !got_bytes_ &&
           (m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE");
  }
  void retry() {
    retried_ = true;
    reused_ = false;
    stream_.reset();
    host_.sockets->closed();
    dial();
  }

  static void onTimer(void* ctx) { static_cast<HttpCall*>(ctx)->fail("timeout"); }

  void fail(const std::string& why) {
    lua_State* L = co_->L();
    lua_pushnil(L);
    lua_pushlstring(L, why.data(), why.size());
    finish(2);
  }

  // The response is complete; `extra` bytes followed it (the connection is then not kept).
  void succeed(size_t extra) {
    lua_State* L = co_->L();
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, head_.status);
    lua_setfield(L, -2, "status");
    std::string_view reason = head_.reason;
    lua_pushlstring(L, reason.data(), reason.size());
    lua_setfield(L, -2, "reason");
    pushResponseHeaders(L, head_);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, resp_body_.data(), resp_body_.size());
    lua_setfield(L, -2, "body");
    if (req_.keepalive && framing_.keep_alive && extra == 0 && stream_ &&
        stream_->pendingBytes() == 0) {
      stream_->readStop();
      stream_->setHandler(nullptr);
      host_.sockets->closed();
      host_.sockets->give(req_.target.key, std::move(stream_), kPoolIdleMs, kPoolSize);
    }
    finish(1);
  }

  void finish(int nresults) {
    Coroutine* co = co_;
    delete this;  // the stream (unless pooled), the dialer and the timer go
    co->wake(nresults);
  }

  CoroutineHost& host_;
  Coroutine* co_;
  Request req_;
  std::unique_ptr<Dialer> dialer_;
  core::TimerPtr timer_;
  core::StreamPtr stream_;
  bool reused_ = false;
  bool retried_ = false;
  bool got_bytes_ = false;
  std::string head_buf_;
  std::string rest_;
  core::http1::HeadParser parser_;
  core::HttpHead head_;
  core::http1::Framing framing_;
  core::http1::BodyDecoder body_;
  bool head_done_ = false;
  std::string resp_body_;
};

// res.headers: lower-case name -> value, or an array of values when the field repeats
// (lua-resty-http's shape).
void pushResponseHeaders(lua_State* L, const core::HttpHead& head) {
  pushHeaderTable(L, head);  // name -> { values }
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    if (lua_objlen(L, -1) == 1) {
      lua_rawgeti(L, -1, 1);
      lua_pushvalue(L, -3);
      lua_insert(L, -2);
      lua_rawset(L, -5);  // replacing the value of an existing key is allowed in lua_next
    }
    lua_pop(L, 1);
  }
}

// Splits "http://host:port/path?q" into req (scheme, target, path). Returns "" or why not.
std::string parseUrl(std::string_view url, Request& req) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "no scheme (http:// or https://)";
  std::string_view scheme = url.substr(0, scheme_end);
  if (core::equalsNoCase(scheme, "https")) {
    req.https = true;
  } else if (!core::equalsNoCase(scheme, "http")) {
    return "unsupported scheme \"" + std::string(scheme) + "\"";
  }
  std::string_view rest = url.substr(scheme_end + 3);
  size_t slash = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view p = rest.substr(slash);
    p = p.substr(0, p.find('#'));
    req.path = p.empty() || p[0] != '/' ? "/" + std::string(p) : std::string(p);
  }
  if (authority.empty() || authority.find('@') != std::string_view::npos)
    return "invalid authority \"" + std::string(authority) + "\"";
  req.host_header = std::string(authority);
  std::string_view host = authority;
  int port = req.https ? 443 : 80;
  if (host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return "invalid IPv6 literal";
    std::string_view after = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!after.empty()) {
      if (after[0] != ':') return "invalid authority";
      port = std::atoi(std::string(after.substr(1)).c_str());
    }
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    port = std::atoi(std::string(host.substr(colon + 1)).c_str());
    host = host.substr(0, colon);
  }
  if (host.empty() || port < 1 || port > 65535) return "invalid host or port";
  req.target.host = std::string(host);
  req.target.port = port;
  req.target.key = fmt::format("{}://{}:{}", req.https ? "https" : "http", host, port);
  return {};
}

// crescent.http.request(opts) -> res { status, reason, headers, body }, or nil, err.
// opts: url (required), method ("GET"; "POST" when a body is given), headers (a table),
// body (a string), timeout (ms, the whole request; default 60000), max_body (bytes),
// keepalive (default true), ssl_verify (default true), ca (a PEM file for https).
int libRequest(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  Request req;
  lua_getfield(L, 1, "url");
  if (!lua_isstring(L, -1)) return luaL_error(L, "crescent.http.request: url is required");
  std::string url = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (std::string err = parseUrl(url, req); !err.empty()) {
    lua_pushnil(L);
    lua_pushfstring(L, "bad url \"%s\": %s", url.c_str(), err.c_str());
    return 2;
  }
  lua_getfield(L, 1, "body");
  if (lua_isstring(L, -1)) {
    size_t len = 0;
    const char* b = lua_tolstring(L, -1, &len);
    req.body.assign(b, len);
    req.has_body = true;
    req.method = "POST";
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "method");
  if (lua_isstring(L, -1)) req.method = lua_tostring(L, -1);
  lua_pop(L, 1);
  for (char c : req.method) {
    if (!core::http1::detail::isTchar(c))
      return luaL_error(L, "crescent.http.request: invalid method \"%s\"", req.method.c_str());
  }
  lua_getfield(L, 1, "headers");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        return luaL_error(L, "crescent.http.request: headers must map names to strings");
      std::string n = lua_tostring(L, -2), v = lua_tostring(L, -1);
      if (!isHeaderName(n) || !isHeaderValue(v))
        return luaL_error(L, "crescent.http.request: invalid header \"%s\"", n.c_str());
      req.headers.emplace_back(std::move(n), std::move(v));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "timeout");
  if (lua_isnumber(L, -1)) req.timeout_ms = static_cast<uint64_t>(lua_tonumber(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, 1, "max_body");
  if (lua_isnumber(L, -1)) req.max_body = static_cast<size_t>(lua_tonumber(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, 1, "keepalive");
  if (lua_isboolean(L, -1)) req.keepalive = lua_toboolean(L, -1) != 0;
  lua_pop(L, 1);
  lua_getfield(L, 1, "ssl_verify");
  if (lua_isboolean(L, -1)) req.verify = lua_toboolean(L, -1) != 0;
  lua_pop(L, 1);
  lua_getfield(L, 1, "ca");
  if (lua_isstring(L, -1)) req.ca = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (req.https) req.target.key += fmt::format("|{}|{}", req.verify ? 1 : 0, req.ca);

  Coroutine* co = Coroutine::running(L);
  if (co == nullptr || !co->mayWait()) {
    return luaL_error(L, "crescent.http.request: cannot wait here (%s)",
                      co == nullptr ? "not in a hook, service, balancer or timer callback on "
                                      "a worker"
                                    : co->what());
  }
  auto* call = new HttpCall(*CoroutineHost::of(L), *co, std::move(req));
  co->suspend(*call);
  call->start();
  return lua_yield(L, 0);
}

}  // namespace

void registerHttpClient(lua_State* L) {
  lua_getglobal(L, "crescent");
  lua_createtable(L, 0, 1);
  pushGuarded<libRequest>(L);
  lua_setfield(L, -2, "request");
  lua_setfield(L, -2, "http");
  lua_pop(L, 1);
}

}  // namespace crescent::lua
