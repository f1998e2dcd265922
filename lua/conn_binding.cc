// The `conn` object of tcp_request hooks (docs/lua-api.md): a connection before any
// protocol. conn.src/src_port/dst/dst_port/frontend, conn.ctx (the txn's), conn:peek(),
// conn.sni / conn.alpn / conn.ssl_version from a TLS ClientHello that is not terminated
// (HAProxy's req.ssl_sni and req.ssl_alpn with tcp-request inspect-delay), and the
// decisions conn:use_backend() and conn:reject().

#include <lua.hpp>

#include <string>

#include "core/net/timer.h"
#include "core/proto/tls_hello.h"
#include "lua/call_context.h"
#include "lua/coroutine.h"
#include "lua/lua_util.h"

namespace crescent::lua {
namespace {

ActiveCall& connCall(lua_State* L) {
  ActiveCall& call = checkCall(L, 1, kConnMeta, "conn", "connection");
  if (call.phase != Phase::kConnection || call.peek == nullptr)
    luaL_error(L, "conn can only be used in the tcp_request hook");
  return call;
}

// Waits until `ready` says the bytes received are enough (or the connection ended, or
// `timeout_ms` passed), then wakes the coroutine with what `finish` pushes.
class PeekWait final : public Wait, private core::PeekWaiter {
 public:
  using Ready = bool (*)(const PeekWait& w);
  using Finish = int (*)(lua_State* L, PeekWait& w, bool timed_out);

  PeekWait(Coroutine& co, core::ConnectionPeek& peek, Ready ready, Finish finish, size_t want)
      : want(want), co_(co), peek_(peek), ready_(ready), finish_(finish) {}
  void start(core::EventLoop& loop, uint64_t timeout_ms) {
    if (timeout_ms > 0) {
      timer_ = core::Timer::create(loop, &PeekWait::onTimer, this);
      timer_->start(timeout_ms);
    }
    peek_.notifyMore(this);
  }
  void cancelWait() override {
    peek_.notifyMore(nullptr);
    delete this;
  }
  const core::ConnectionPeek& peek() const { return peek_; }
  size_t want;

 private:
  void onPeekMore() override {
    if (!ready_(*this) && !peek_.ended()) return peek_.notifyMore(this);
    done(false);
  }
  static void onTimer(void* ctx) {
    auto* w = static_cast<PeekWait*>(ctx);
    w->peek_.notifyMore(nullptr);
    w->done(true);
  }
  void done(bool timed_out) {
    Coroutine& co = co_;
    int n = finish_(co.L(), *this, timed_out);
    delete this;
    co.wake(n);
  }

  Coroutine& co_;
  core::ConnectionPeek& peek_;
  Ready ready_;
  Finish finish_;
  core::TimerPtr timer_;
};

Coroutine* waitingConn(lua_State* L, const char* fn) {
  Coroutine* co = Coroutine::running(L);
  if (co == nullptr || !co->mayWait()) luaL_error(L, "%s: cannot wait here", fn);
  return co;
}

// conn:peek(n [, timeout_ms]) -> the first n bytes received (without consuming them),
// as soon as they are there; on timeout or close, what there is and "timeout"/"closed".
int peekFinish(lua_State* L, PeekWait& w, bool timed_out) {
  std::string_view got = w.peek().received();
  size_t n = std::min(got.size(), w.want);
  lua_pushlstring(L, got.data(), n);
  if (n >= w.want) return 1;
  lua_pushstring(L, timed_out ? "timeout" : "closed");
  return 2;
}

int connPeek(lua_State* L) {
  ActiveCall& call = connCall(L);
  lua_Number want = luaL_checknumber(L, 2);
  if (want < 1 || want != static_cast<size_t>(want)) return luaL_error(L, "conn:peek: bad size");
  core::ConnectionPeek& peek = *call.peek;
  uint64_t timeout =
      lua_isnumber(L, 3) ? static_cast<uint64_t>(lua_tonumber(L, 3)) : peek.inspectDelayMs();
  auto n = static_cast<size_t>(want);
  std::string_view got = peek.received();
  if (got.size() >= n || peek.ended()) {
    lua_pushlstring(L, got.data(), std::min(n, got.size()));
    if (got.size() >= n) return 1;
    lua_pushstring(L, "closed");
    return 2;
  }
  Coroutine* co = waitingConn(L, "conn:peek");
  auto* w = new PeekWait(
      *co, peek, [](const PeekWait& pw) { return pw.peek().received().size() >= pw.want; },
      &peekFinish, n);
  co->suspend(*w);
  w->start(*CoroutineHost::of(L)->loop, timeout);
  return lua_yield(L, 0);
}

// The ClientHello's facts as a table { sni, alpn = { ... }, ssl_version, tls = bool }.
int pushHello(lua_State* L, std::string_view bytes) {
  core::tls::ClientHello h = core::tls::parseClientHello(bytes);
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, h.state == core::tls::ClientHello::State::kHello);
  lua_setfield(L, -2, "tls");
  if (h.state != core::tls::ClientHello::State::kHello) return 1;
  if (!h.sni.empty()) {
    lua_pushlstring(L, h.sni.data(), h.sni.size());
    lua_setfield(L, -2, "sni");
  }
  lua_createtable(L, static_cast<int>(h.alpn.size()), 0);
  for (size_t i = 0; i < h.alpn.size(); ++i) {
    lua_pushlstring(L, h.alpn[i].data(), h.alpn[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_setfield(L, -2, "alpn");
  lua_pushinteger(L, h.version);
  lua_setfield(L, -2, "ssl_version");
  return 1;
}

bool helloDecided(std::string_view bytes) {
  return core::tls::parseClientHello(bytes).state != core::tls::ClientHello::State::kNeedMore;
}

// conn:_hello(): waits (up to inspect_delay) until the bytes received are a complete
// ClientHello or are known not to be one; the __index of conn.sni and friends calls it.
int connHello(lua_State* L) {
  ActiveCall& call = connCall(L);
  core::ConnectionPeek& peek = *call.peek;
  if (helloDecided(peek.received()) || peek.ended()) return pushHello(L, peek.received());
  Coroutine* co = waitingConn(L, "conn.sni");
  auto* w = new PeekWait(
      *co, peek, [](const PeekWait& pw) { return helloDecided(pw.peek().received()); },
      [](lua_State* Lc, PeekWait& pw, bool) { return pushHello(Lc, pw.peek().received()); }, 0);
  co->suspend(*w);
  w->start(*CoroutineHost::of(L)->loop, peek.inspectDelayMs());
  return lua_yield(L, 0);
}

int checkUndecided(lua_State* L, ActiveCall& call, const char* method) {
  if (call.conn_decision->kind != core::ConnDecision::Kind::kContinue)
    return raiseFormat(L, "conn:%s: the hook already decided", method);
  return 0;
}

int connReject(lua_State* L) {
  ActiveCall& call = connCall(L);
  if (checkUndecided(L, call, "reject") == kRaise) return kRaise;
  call.conn_decision->kind = core::ConnDecision::Kind::kReject;
  return 0;
}

int connUseBackend(lua_State* L) {
  ActiveCall& call = connCall(L);
  std::string name(checkView(L, 2));
  if (call.ctx->http) {
    return raiseFormat(L,
                       "conn:use_backend: only in TCP mode (in HTTP mode, http_request's "
                       "txn:use_backend chooses per request)");
  }
  if (checkUndecided(L, call, "use_backend") == kRaise) return kRaise;
  lua_getfield(L, LUA_REGISTRYINDEX, kConfigCtxKey);
  lua_getfield(L, -1, "backend_modes");
  lua_getfield(L, -1, name.c_str());
  std::string mode = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  lua_pop(L, 3);
  if (mode.empty())
    return raiseFormat(L, "conn:use_backend: no backend named \"%s\"", name.c_str());
  if (mode != "tcp") {
    return raiseFormat(L, "conn:use_backend: backend \"%s\" is in %s mode", name.c_str(),
                       mode.c_str());
  }
  call.conn_decision->kind = core::ConnDecision::Kind::kUseBackend;
  call.conn_decision->backend = name;
  return 0;
}

// conn's plain fields (the __index wrapper handles methods and the ClientHello fields).
int connField(lua_State* L) {
  ActiveCall& call = connCall(L);
  std::string_view key = checkView(L, 2);
  const core::RequestContext& ctx = *call.ctx;
  if (pushOriginField(L, key, ctx)) return 1;
  if (key == "mode") {
    lua_pushstring(L, ctx.http ? "http" : "tcp");
    return 1;
  }
  if (key == "ctx") {
    lua_getfenv(L, 1);  // the txn's environment: its ctx is conn.ctx
    lua_getfield(L, -1, "ctx");
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, "ctx");
    }
    return 1;
  }
  return 0;
}

int connReadOnly(lua_State* L) {
  return raiseFormat(L, "conn is read-only (keep your data in conn.ctx)");
}

// The __index of conn, in Lua so that conn.sni may wait (a yield from a Lua metamethod).
const char* kIndexSource = R"(
local methods, field, hello = ...
local cached = setmetatable({}, { __mode = "k" })
return function(conn, key)
  local m = methods[key]
  if m then return m end
  if key == "sni" or key == "alpn" or key == "ssl_version" or key == "tls" then
    local h = cached[conn]
    if not h then h = hello(conn); cached[conn] = h end
    return h[key]
  end
  return field(conn, key)
end
)";

}  // namespace

void registerConn(lua_State* L) {
  if (luaL_newmetatable(L, kConnMeta) == 0) {
    lua_pop(L, 1);
    return;
  }
  int meta = lua_gettop(L);
  if (luaL_loadstring(L, kIndexSource) != 0) lua_error(L);
  lua_createtable(L, 0, 3);
  pushGuarded<connPeek>(L);
  lua_setfield(L, -2, "peek");
  pushGuarded<connReject>(L);
  lua_setfield(L, -2, "reject");
  pushGuarded<connUseBackend>(L);
  lua_setfield(L, -2, "use_backend");
  pushGuarded<connField>(L);
  pushGuarded<connHello>(L);
  lua_call(L, 3, 1);
  lua_setfield(L, meta, "__index");
  pushGuarded<connReadOnly>(L);
  lua_setfield(L, meta, "__newindex");
  lua_pushstring(L, "conn");
  lua_setfield(L, meta, "__name");
  lua_pushboolean(L, 0);
  lua_setfield(L, meta, "__metatable");
  lua_settop(L, meta - 1);
}

void pushConn(lua_State* L, int txn_idx) {
  txn_idx = absIndex(L, txn_idx);
  auto* txn = static_cast<Handle*>(lua_touserdata(L, txn_idx));
  pushTxnEnv(L, txn_idx);  // shared with conn: conn.ctx is txn.ctx
  int env = lua_gettop(L);
  lua_pushvalue(L, txn_idx);
  lua_rawseti(L, env, 1);  // keeps the txn (the state conn points to) alive
  pushHandle(L, *txn->call, kConnMeta);
  lua_pushvalue(L, env);
  lua_setfenv(L, -2);
  lua_remove(L, env);
}

}  // namespace crescent::lua
