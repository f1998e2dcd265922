// crescent.socket.tcp(): OpenResty's cosocket shape on the worker's loop (docs/lua-api.md),
// and the state's keepalive pool (SocketPool).
#include "lua/socket_binding.h"

#include <lua.hpp>

#include <algorithm>

#include "lua/dialer.h"
#include "lua/lua_util.h"
#include "lua/script_scope.h"

namespace crescent::lua {

// ---------------------------------------------------------------- SocketPool

SocketPool::SocketPool(CoroutineHost& host) : host_(host) {}

SocketPool::~SocketPool() {
  clear();
}

core::StreamPtr SocketPool::take(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  Idle* idle = it->second.back();  // the most recently used: the likeliest to be alive
  it->second.pop_back();
  core::StreamPtr s = std::move(idle->stream);
  s->readStop();
  s->setHandler(nullptr);
  by_stream_.erase(s.get());
  return s;
}

void SocketPool::give(const std::string& key, core::StreamPtr s, uint64_t idle_ms, size_t max) {
  if (max == 0 || host_.loop == nullptr) return;  // dropped: closes
  std::deque<Idle*>& q = idle_[key];
  while (q.size() >= max) {
    Idle* oldest = q.front();
    q.pop_front();
    by_stream_.erase(oldest->stream.get());
  }
  auto idle = std::make_unique<Idle>();
  idle->pool = this;
  idle->key = key;
  idle->stream = std::move(s);
  idle->stream->setHandler(this);
  idle->stream->readStart();  // a close, or bytes nobody asked for, end it
  if (idle_ms > 0) {
    idle->timer = core::Timer::create(*host_.loop, &Idle::onTimer, idle.get());
    idle->timer->start(idle_ms);
  }
  q.push_back(idle.get());
  core::Stream* key_stream = idle->stream.get();
  by_stream_[key_stream] = std::move(idle);
}

void SocketPool::Idle::onTimer(void* ctx) {
  auto* idle = static_cast<Idle*>(ctx);
  idle->pool->drop(*idle->stream);
}

void SocketPool::drop(core::Stream& s) {
  auto it = by_stream_.find(&s);
  if (it == by_stream_.end()) return;
  std::deque<Idle*>& q = idle_[it->second->key];
  q.erase(std::remove(q.begin(), q.end(), it->second.get()), q.end());
  by_stream_.erase(it);  // closes the stream; the timer with it
}

void SocketPool::onStreamData(core::Stream& s, core::Buffer) {
  drop(s);
}

void SocketPool::onStreamEof(core::Stream& s) {
  drop(s);
}

void SocketPool::onStreamError(core::Stream& s, int) {
  drop(s);
}

void SocketPool::clear() {
  idle_.clear();
  by_stream_.clear();
}

const core::tls::ClientContext* SocketPool::tlsContext(bool verify, const std::string& ca,
                                                       const std::string& ip, std::string& error) {
  std::string key = std::string(verify ? "v" : "n") + "|" + ca + "|" + ip;
  auto it = tls_.find(key);
  if (it != tls_.end()) return it->second.get();
  core::TlsServerConfig cfg;
  cfg.enabled = true;
  cfg.verify = verify;
  cfg.ca = ca;
  core::Address addr;
  if (!ip.empty()) {
    auto a = core::Address::parse((ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":1");
    if (a.ok()) addr = *a;
  }
  auto ctx = core::tls::ClientContext::create(cfg, addr);
  if (!ctx.ok()) {
    error = ctx.message();
    return nullptr;
  }
  return (tls_[key] = std::move(*ctx)).get();
}

// ---------------------------------------------------------------- the cosocket

namespace {

constexpr const char* kSocketMeta = "crescent.socket.tcp";
constexpr uint64_t kDefaultTimeoutMs = 60000;     // OpenResty's lua_socket_*_timeout
constexpr size_t kMaxReceive = 64 * 1024 * 1024;  // receive("*a") and lines
constexpr size_t kDefaultPoolSize = 30;           // OpenResty's lua_socket_pool_size

// One TCP or UNIX connection of a script. Owned by its userdata (freed in __gc); belongs
// to the scope (exchange or timer callback) it was made in, which closes it.
class CoSocket final : private core::StreamHandler,
                       private Dialer::Owner,
                       public Wait,
                       public ScopedResource {
 public:
  enum class Op { kNone, kConnect, kSend, kReceive };

  CoSocket(CoroutineHost& host, ScriptScope* scope) : host_(host), scope_(scope) {
    if (scope_ != nullptr) scope_->add(this);
  }
  ~CoSocket() {
    closeStream();
    if (scope_ != nullptr) scope_->remove(this);
  }

  // Lua methods (each returns the number of results pushed, or lua_yield's value).
  int connect(lua_State* L);
  int send(lua_State* L);
  int receive(lua_State* L);
  int close(lua_State* L);
  int setKeepalive(lua_State* L);
  int setTimeouts(uint64_t c, uint64_t s, uint64_t r) {
    connect_ms_ = c;
    send_ms_ = s;
    read_ms_ = r;
    return 0;
  }
  int reusedTimes() const { return reused_; }

  void cancelWait() override {
    op_ = Op::kNone;
    co_ = nullptr;
    dialer_.reset();
    if (timer_) timer_->stop();
    closeStream();  // half an operation: the connection cannot be reused
  }
  void closeForScope() override {
    scope_ = nullptr;
    closeStream();
  }

 private:
  void closeStream() {
    dialer_.reset();
    if (stream_) {
      stream_.reset();
      if (host_.sockets != nullptr) host_.sockets->closed();  // null: the state is closing
    }
  }
  int suspend(lua_State* L, Op op, uint64_t timeout_ms);
  void complete(int nresults);
  void fail(const char* error);
  bool tryReceive(lua_State* L, int& nresults);
  void onDialed(core::StreamPtr s, bool reused, const std::string& error) override;
  void onStreamData(core::Stream& s, core::Buffer data) override;
  void onStreamEof(core::Stream& s) override;
  void onStreamError(core::Stream& s, int err) override;
  void onStreamDrained(core::Stream& s) override;
  static void onTimer(void* ctx);

  CoroutineHost& host_;
  ScriptScope* scope_;
  core::StreamPtr stream_;
  std::unique_ptr<Dialer> dialer_;
  core::TimerPtr timer_;
  std::string key_;
  std::string rbuf_;
  std::string error_;  // a failure seen while no operation was waiting
  bool eof_ = false;
  int reused_ = 0;
  uint64_t connect_ms_ = kDefaultTimeoutMs, send_ms_ = kDefaultTimeoutMs,
           read_ms_ = kDefaultTimeoutMs;
  Op op_ = Op::kNone;
  Coroutine* co_ = nullptr;  // the coroutine waiting on op_
  // receive's pattern
  enum class Pattern { kLine, kAll, kCount } pattern_ = Pattern::kLine;
  size_t count_ = 0;
};

// The coroutine a socket operation may wait in, or a Lua error.
Coroutine* waitingHere(lua_State* L, const char* fn) {
  Coroutine* co = Coroutine::running(L);
  if (co == nullptr || !co->mayWait()) {
    luaL_error(L, "%s: cannot wait here (%s)", fn,
               co == nullptr ? "not in a hook, service, balancer or timer callback on a worker"
                             : co->what());
  }
  return co;
}

int pushFailure(lua_State* L, const char* error) {
  lua_pushnil(L);
  lua_pushstring(L, error);
  return 2;
}

int CoSocket::suspend(lua_State* L, Op op, uint64_t timeout_ms) {
  Coroutine* co = waitingHere(L, "crescent.socket");
  op_ = op;
  co_ = co;
  if (timeout_ms > 0 && op != Op::kConnect) {
    if (!timer_) timer_ = core::Timer::create(*host_.loop, &CoSocket::onTimer, this);
    timer_->start(timeout_ms);
  }
  co->suspend(*this);
  return lua_yield(L, 0);
}

// The operation is over; `nresults` values are on the coroutine's stack.
void CoSocket::complete(int nresults) {
  Coroutine* co = co_;
  op_ = Op::kNone;
  co_ = nullptr;
  if (timer_) timer_->stop();
  if (stream_ && !eof_) stream_->readStop();  // nobody reads: bytes wait in the kernel
  co->wake(nresults);  // may free us (the coroutine's end may end the scope): last
}

void CoSocket::fail(const char* error) {
  lua_State* L = co_->L();
  lua_pushnil(L);
  lua_pushstring(L, error);
  int n = 2;
  if (op_ == Op::kReceive) {  // the partial data, as OpenResty returns it
    lua_pushlstring(L, rbuf_.data(), rbuf_.size());
    rbuf_.clear();
    n = 3;
  }
  if (op_ == Op::kConnect || std::string_view(error) != "timeout") closeStream();
  complete(n);
}

void CoSocket::onTimer(void* ctx) {
  auto* s = static_cast<CoSocket*>(ctx);
  if (s->op_ != Op::kNone) s->fail("timeout");
}

// sock:connect(host, port [, opts]) / sock:connect("unix:/path" [, opts]) -> true or nil, err.
// opts: { pool = "name", timeout = ms }.
int CoSocket::connect(lua_State* L) {
  if (op_ != Op::kNone) return luaL_error(L, "socket busy (another operation waits)");
  closeStream();
  rbuf_.clear();
  error_.clear();
  eof_ = false;
  DialTarget t;
  std::string first(checkView(L, 2));
  int opts = 3;
  if (first.rfind("unix:", 0) == 0) {
    t.unix_path = first.substr(5);
    t.key = first;
  } else {
    lua_Number port = luaL_checknumber(L, 3);
    if (port != static_cast<int>(port) || port < 1 || port > 65535)
      return luaL_error(L, "sock:connect: invalid port %f", port);
    t.host = first;
    if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']')
      t.host = t.host.substr(1, t.host.size() - 2);
    t.port = static_cast<int>(port);
    t.key = t.host + ":" + std::to_string(t.port);
    opts = 4;
  }
  uint64_t timeout = connect_ms_;
  if (lua_istable(L, opts)) {
    lua_getfield(L, opts, "pool");
    if (lua_isstring(L, -1)) t.key = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, opts, "timeout");
    if (lua_isnumber(L, -1)) timeout = static_cast<uint64_t>(lua_tonumber(L, -1));
    lua_pop(L, 1);
  }
  waitingHere(L, "sock:connect");
  key_ = t.key;
  dialer_ = std::make_unique<Dialer>(host_, static_cast<Dialer::Owner&>(*this));
  dialer_->start(t, timeout);
  return suspend(L, Op::kConnect, 0);  // the dialer keeps the time
}

void CoSocket::onDialed(core::StreamPtr s, bool reused, const std::string& error) {
  dialer_.reset();
  if (!s) return fail(error.c_str());
  stream_ = std::move(s);
  host_.sockets->opened();
  stream_->setHandler(this);
  if (reused) ++reused_;
  lua_pushboolean(co_->L(), 1);
  complete(1);
}

// sock:send(data) -> bytes sent, or nil, err. `data`: a string, or an array of strings.
int CoSocket::send(lua_State* L) {
  if (op_ != Op::kNone) return luaL_error(L, "socket busy (another operation waits)");
  std::string data;
  if (lua_istable(L, 2)) {
    int n = static_cast<int>(lua_objlen(L, 2));
    for (int i = 1; i <= n; ++i) {
      lua_rawgeti(L, 2, i);
      size_t len = 0;
      const char* p = lua_tolstring(L, -1, &len);
      if (p == nullptr) return luaL_error(L, "sock:send: element %d is not a string", i);
      data.append(p, len);
      lua_pop(L, 1);
    }
  } else {
    data = std::string(checkView(L, 2));
  }
  if (!stream_) return pushFailure(L, error_.empty() ? "closed" : error_.c_str());
  if (!error_.empty()) return pushFailure(L, error_.c_str());
  size_t n = data.size();
  stream_->write(std::move(data));
  if (!stream_->aboveHighWater()) {
    lua_pushinteger(L, static_cast<lua_Integer>(n));
    return 1;
  }
  count_ = n;
  return suspend(L, Op::kSend, send_ms_);  // until the output drains
}

void CoSocket::onStreamDrained(core::Stream&) {
  if (op_ != Op::kSend) return;
  lua_pushinteger(co_->L(), static_cast<lua_Integer>(count_));
  complete(1);
}

// Whether rbuf_ satisfies the pattern; if so, pushes the result on L.
bool CoSocket::tryReceive(lua_State* L, int& nresults) {
  nresults = 1;
  switch (pattern_) {
    case Pattern::kCount:
      if (rbuf_.size() < count_) return false;
      lua_pushlstring(L, rbuf_.data(), count_);
      rbuf_.erase(0, count_);
      return true;
    case Pattern::kLine: {
      size_t lf = rbuf_.find('\n');
      if (lf == std::string::npos) return false;
      size_t end = lf > 0 && rbuf_[lf - 1] == '\r' ? lf - 1 : lf;
      lua_pushlstring(L, rbuf_.data(), end);
      rbuf_.erase(0, lf + 1);
      return true;
    }
    case Pattern::kAll:
      if (!eof_) return false;
      lua_pushlstring(L, rbuf_.data(), rbuf_.size());
      rbuf_.clear();
      return true;
  }
  return false;
}

// sock:receive([pattern]) -> data, or nil, err, partial. pattern: "*l" (default: a line
// without its CR LF or LF), "*a" (everything until the peer closes), or a byte count.
int CoSocket::receive(lua_State* L) {
  if (op_ != Op::kNone) return luaL_error(L, "socket busy (another operation waits)");
  if (lua_isnumber(L, 2)) {
    lua_Number n = lua_tonumber(L, 2);
    if (n < 0 || n != static_cast<size_t>(n)) return luaL_error(L, "sock:receive: bad count");
    pattern_ = Pattern::kCount;
    count_ = static_cast<size_t>(n);
  } else {
    std::string_view p = lua_isnoneornil(L, 2) ? "*l" : checkView(L, 2);
    if (p == "*l" || p == "l") {
      pattern_ = Pattern::kLine;
    } else if (p == "*a" || p == "a") {
      pattern_ = Pattern::kAll;
    } else {
      return luaL_error(L, "sock:receive: bad pattern \"%s\" (\"*l\", \"*a\" or a number)",
                        std::string(p).c_str());
    }
  }
  int n = 0;
  if (tryReceive(L, n)) return n;
  if (!error_.empty() || !stream_ || eof_) {
    const char* why = !error_.empty() ? error_.c_str() : "closed";
    lua_pushnil(L);
    lua_pushstring(L, why);
    lua_pushlstring(L, rbuf_.data(), rbuf_.size());
    rbuf_.clear();
    return 3;
  }
  stream_->readStart();
  return suspend(L, Op::kReceive, read_ms_);
}

void CoSocket::onStreamData(core::Stream&, core::Buffer data) {
  rbuf_.append(data.view());
  if (op_ != Op::kReceive) {
    stream_->readStop();
    return;
  }
  int n = 0;
  if (tryReceive(co_->L(), n)) return complete(n);
  if (rbuf_.size() > kMaxReceive) fail("too much data");
}

void CoSocket::onStreamEof(core::Stream&) {
  eof_ = true;
  if (op_ != Op::kReceive) return;
  int n = 0;
  if (tryReceive(co_->L(), n)) return complete(n);
  fail("closed");
}

void CoSocket::onStreamError(core::Stream&, int err) {
  const char* why = err == UV_ECONNRESET ? "connection reset by peer" : uv_strerror(err);
  if (op_ == Op::kNone) {
    error_ = why;
    closeStream();
    return;
  }
  fail(why);
}

int CoSocket::close(lua_State* L) {
  if (op_ != Op::kNone) return luaL_error(L, "socket busy (another operation waits)");
  if (!stream_) return pushFailure(L, "closed");
  closeStream();
  lua_pushboolean(L, 1);
  return 1;
}

// sock:setkeepalive([idle_ms [, pool_size]]) -> true or nil, err: the connection goes to
// the state's pool for the next connect() to the same key; the socket is closed for the
// script. Refused while data is unread or the connection failed.
int CoSocket::setKeepalive(lua_State* L) {
  if (op_ != Op::kNone) return luaL_error(L, "socket busy (another operation waits)");
  uint64_t idle = lua_isnumber(L, 2) ? static_cast<uint64_t>(lua_tonumber(L, 2)) : 60000;
  size_t max = lua_isnumber(L, 3) ? static_cast<size_t>(lua_tonumber(L, 3)) : kDefaultPoolSize;
  if (!stream_) return pushFailure(L, "closed");
  if (!error_.empty() || eof_) {
    closeStream();
    return pushFailure(L, "closed");
  }
  if (!rbuf_.empty()) return pushFailure(L, "unread data");
  if (stream_->pendingBytes() > 0) return pushFailure(L, "unsent data");
  host_.sockets->closed();
  host_.sockets->give(key_, std::move(stream_), idle, max);
  lua_pushboolean(L, 1);
  return 1;
}

CoSocket* checkSocket(lua_State* L) {
  auto** p = static_cast<CoSocket**>(luaL_checkudata(L, 1, kSocketMeta));
  return *p;
}

int sockConnect(lua_State* L) {
  return checkSocket(L)->connect(L);
}
int sockSend(lua_State* L) {
  return checkSocket(L)->send(L);
}
int sockReceive(lua_State* L) {
  return checkSocket(L)->receive(L);
}
int sockClose(lua_State* L) {
  return checkSocket(L)->close(L);
}
int sockSetKeepalive(lua_State* L) {
  return checkSocket(L)->setKeepalive(L);
}
int sockSetTimeout(lua_State* L) {
  auto ms = static_cast<uint64_t>(luaL_checknumber(L, 2));
  checkSocket(L)->setTimeouts(ms, ms, ms);
  return 0;
}
int sockSetTimeouts(lua_State* L) {
  checkSocket(L)->setTimeouts(static_cast<uint64_t>(luaL_checknumber(L, 2)),
                              static_cast<uint64_t>(luaL_checknumber(L, 3)),
                              static_cast<uint64_t>(luaL_checknumber(L, 4)));
  return 0;
}
int sockReusedTimes(lua_State* L) {
  lua_pushinteger(L, checkSocket(L)->reusedTimes());
  return 1;
}
int sockGc(lua_State* L) {
  auto** p = static_cast<CoSocket**>(luaL_checkudata(L, 1, kSocketMeta));
  delete *p;
  *p = nullptr;
  return 0;
}

// crescent.socket.tcp() -> sock. Closed (with its connection) when the hook, exchange or
// timer callback that made it ends, unless given to the pool with setkeepalive().
int libTcp(lua_State* L) {
  CoroutineHost* host = CoroutineHost::of(L);
  if (host == nullptr || host->sockets == nullptr) return luaL_error(L, "no sockets here");
  Coroutine* co = Coroutine::running(L);
  auto** p = static_cast<CoSocket**>(lua_newuserdata(L, sizeof(CoSocket*)));
  *p = new CoSocket(*host, co != nullptr ? co->scope() : nullptr);
  luaL_getmetatable(L, kSocketMeta);
  lua_setmetatable(L, -2);
  return 1;
}

}  // namespace

void registerHttpClient(lua_State* L);  // http_client.cc: crescent.http

void registerSockets(lua_State* L) {
  static const luaL_Reg kMethods[] = {
      {"connect", &guarded<sockConnect>},
      {"send", &guarded<sockSend>},
      {"receive", &guarded<sockReceive>},
      {"close", &guarded<sockClose>},
      {"setkeepalive", &guarded<sockSetKeepalive>},
      {"settimeout", &guarded<sockSetTimeout>},
      {"settimeouts", &guarded<sockSetTimeouts>},
      {"getreusedtimes", &guarded<sockReusedTimes>},
      {nullptr, nullptr},
  };
  if (luaL_newmetatable(L, kSocketMeta) != 0) {
    lua_newtable(L);
    for (const luaL_Reg* m = kMethods; m->name != nullptr; ++m) {
      lua_pushcfunction(L, m->func);
      lua_setfield(L, -2, m->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, &guarded<sockGc>);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_getglobal(L, "crescent");
  lua_createtable(L, 0, 1);
  pushGuarded<libTcp>(L);
  lua_setfield(L, -2, "tcp");
  lua_setfield(L, -2, "socket");
  lua_pop(L, 1);
  registerHttpClient(L);
}

}  // namespace crescent::lua
