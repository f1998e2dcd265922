// The `txn` object given to hooks (docs/lua-api.md): txn.req and txn.resp
// (head_binding.cc), txn.src/src_port/dst/dst_port/frontend, and the decisions
// txn:reply(), txn:deny() (http_request, http_response) and txn:use_backend()
// (http_request).

#include <algorithm>
#include <cstdarg>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lua/call_context.h"
#include "lua/http_util.h"
#include "lua/lua_util.h"

namespace crescent::lua {

using core::HookDecision;

namespace {

// The environment every txn starts with (one shared empty table); txn.req / txn.resp
// give a txn its own on first use.
// Registry key (by address) of the one empty table every txn starts with as environment.
char kSharedEnvKey;

ActiveCall& txnCall(lua_State* L) {
  return checkCall(L, 1, kTxnMeta, "txn", "hook");
}
// txn --------------------------------------------------------------------------------

const char* decisionName(HookDecision::Kind k) {
  switch (k) {
    case HookDecision::Kind::kReply:
      return "reply";
    case HookDecision::Kind::kUseBackend:
      return "use_backend";
    default:
      return "continue";
  }
}

int checkUndecided(lua_State* L, ActiveCall& call, const char* method) {
  if (call.decision == nullptr) {
    return raiseFormat(L, "txn:%s: only http_request and http_response hooks can decide", method);
  }
  if (call.decision->kind != HookDecision::Kind::kContinue) {
    return raiseFormat(L, "txn:%s: the hook already decided (txn:%s was called)", method,
                       decisionName(call.decision->kind));
  }
  return 0;
}

int checkStatus(lua_State* L, int idx, const char* method, int dflt, int& status) {
  lua_Number n = lua_isnoneornil(L, idx) && dflt != 0 ? dflt : luaL_checknumber(L, idx);
  if (n != static_cast<int>(n) || n < 100 || n > 599) {
    return raiseFormat(L, "txn:%s: invalid status %f (expected 100..599)", method, n);
  }
  status = static_cast<int>(n);
  return 0;
}

// Reads { name = value | { value, ... } } at idx into `out`, sorted by name; raises.
int collectHeaders(lua_State* L, int idx, const char* what,
                   std::vector<std::pair<std::string, std::string>>& out) {
  std::string error;
  if (!readHeaderTable(L, idx, out, error)) return raiseFormat(L, "%s: %s", what, error.c_str());
  return 0;
}

int txnReply(lua_State* L) {
  ActiveCall& call = txnCall(L);
  int status = 0;
  if (checkStatus(L, 2, "reply", 0, status) == kRaise) return kRaise;
  if (!lua_isnoneornil(L, 3)) luaL_checklstring(L, 3, nullptr);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  if (checkUndecided(L, call, "reply") == kRaise) return kRaise;
  std::vector<std::pair<std::string, std::string>> headers;
  if (!lua_isnoneornil(L, 4) && collectHeaders(L, 4, "txn:reply", headers) == kRaise) {
    return kRaise;
  }
  HookDecision& d = *call.decision;
  d.kind = HookDecision::Kind::kReply;
  d.status = status;
  d.body = lua_isnoneornil(L, 3) ? core::Bytes() : bodyBytes(L, 3);
  d.headers = std::move(headers);
  return 0;
}

int txnDeny(lua_State* L) {
  ActiveCall& call = txnCall(L);
  int status = 0;
  if (checkStatus(L, 2, "deny", 403, status) == kRaise) return kRaise;
  if (checkUndecided(L, call, "deny") == kRaise) return kRaise;
  HookDecision& d = *call.decision;
  d.kind = HookDecision::Kind::kReply;
  d.status = status;
  d.body = std::to_string(status) + " " + std::string(reasonPhrase(status)) + "\n";
  d.headers = {{"content-type", "text/plain"}};
  d.error_page = true;
  return 0;
}

int txnUseBackend(lua_State* L) {
  ActiveCall& call = txnCall(L);
  std::string_view name = checkView(L, 2);
  if (call.phase != Phase::kRequest) {
    return raiseFormat(L, "txn:use_backend: only an http_request hook can choose the backend");
  }
  if (checkUndecided(L, call, "use_backend") == kRaise) return kRaise;
  // The backends this script declared, and their modes (stdlib/config.lua seal()).
  lua_getfield(L, LUA_REGISTRYINDEX, kConfigCtxKey);
  lua_getfield(L, -1, "backend_modes");
  lua_pushlstring(L, name.data(), name.size());
  lua_rawget(L, -2);
  std::string mode = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  lua_pop(L, 3);
  if (mode.empty()) {
    return raiseFormat(L, "txn:use_backend: no backend named \"%s\"", std::string(name).c_str());
  }
  if (mode != "http") {
    return raiseFormat(L, "txn:use_backend: backend \"%s\" is in %s mode",
                       std::string(name).c_str(), mode.c_str());
  }
  call.decision->kind = HookDecision::Kind::kUseBackend;
  call.decision->backend = std::string(name);
  return 0;
}

void pushProxyHeader(lua_State* L, const core::proxy::Header& h);
void pushTlsInfo(lua_State* L, const core::tls::Info& i);

void pushOwnEnv(lua_State* L) {
  pushTxnEnv(L, 1);
}

int txnIndex(lua_State* L) {
  ActiveCall& call = txnCall(L);
  std::string_view key;
  if (indexMethodOrKey(L, key)) return 1;
  if (key.empty()) return 0;
  const core::RequestContext& ctx = *call.ctx;
  if (key == "req" || key == "resp" || key == "ctx") {
    // Made on first use (a balancer that never looks at the request pays nothing), then
    // kept in the txn's own environment table so txn.req is the same object each time.
    bool req = key == "req";
    if (key != "ctx" && (!ctx.http || (!req && ctx.resp == nullptr))) return 0;
    pushOwnEnv(L);
    lua_pushvalue(L, 2);  // the key, already an interned string: no hashing
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
    if (key == "ctx") {
      lua_newtable(L);  // txn.ctx: the exchange's own table, seen by every later phase
    } else {
      pushHandle(L, call, req ? kReqMeta : kRespMeta);
      lua_createtable(L, 1, 0);  // the handle's environment keeps the txn (its state) alive
      lua_pushvalue(L, 1);
      lua_rawseti(L, -2, 1);
      lua_setfenv(L, -2);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    return 1;
  }
  if (pushOriginField(L, key, ctx)) return 1;
  if (key == "proxy") {
    if (ctx.proxy == nullptr) return 0;
    pushProxyHeader(L, *ctx.proxy);
    return 1;
  }
  if (key == "tls") {
    if (ctx.tls == nullptr) return 0;
    pushTlsInfo(L, *ctx.tls);
    return 1;
  }
  return 0;
}

// txn.tls.client: { verified, error (absent when verified), subject, issuer (RFC 2253),
// serial (hex), not_before, not_after (Unix seconds), sha256 (hex of the DER), cn }.
void pushClientCert(lua_State* L, const core::tls::ClientCert& c) {
  lua_createtable(L, 0, 9);
  lua_pushboolean(L, c.verified ? 1 : 0);
  lua_setfield(L, -2, "verified");
  auto set = [&](const char* name, const std::string& v) {
    if (v.empty()) return;
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, name);
  };
  set("error", c.error);
  set("subject", c.subject);
  set("issuer", c.issuer);
  set("cn", c.cn);
  set("serial", c.serial);
  set("sha256", c.sha256);
  lua_pushnumber(L, static_cast<lua_Number>(c.not_before));
  lua_setfield(L, -2, "not_before");
  lua_pushnumber(L, static_cast<lua_Number>(c.not_after));
  lua_setfield(L, -2, "not_after");
}

// txn.tls: the TLS session crescent terminated on the bind, as a table: { version,
// cipher, sni, alpn, resumed, client }; sni and alpn are absent when the client sent no
// name / ALPN agreed on none; client when it sent no certificate (or the bind asks none).
void pushTlsInfo(lua_State* L, const core::tls::Info& i) {
  lua_createtable(L, 0, 6);
  auto set = [&](const char* name, const std::string& v) {
    if (v.empty()) return;
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, name);
  };
  set("version", i.version);
  set("cipher", i.cipher);
  set("sni", i.sni);
  set("alpn", i.alpn);
  lua_pushboolean(L, i.resumed ? 1 : 0);
  lua_setfield(L, -2, "resumed");
  if (i.client) {
    pushClientCert(L, *i.client);
    lua_setfield(L, -2, "client");
  }
}

// txn.proxy: the PROXY header the connection began with, as a table:
// { version = 1|2, command = "PROXY"|"LOCAL", src, src_port, dst, dst_port (when it
// carried addresses), tlv = { [type] = value bytes }, alpn, authority, unique_id,
// ssl = { version, cipher, cn, verify, client_ssl, cert_conn, cert_sess, verified } }.
void pushProxyHeader(lua_State* L, const core::proxy::Header& h) {
  lua_createtable(L, 0, 12);
  lua_pushinteger(L, h.version);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, h.command == core::proxy::Command::kProxy ? "PROXY" : "LOCAL");
  lua_setfield(L, -2, "command");
  if (h.has_addresses) {
    std::string s = h.src.ip(), d = h.dst.ip();
    lua_pushlstring(L, s.data(), s.size());
    lua_setfield(L, -2, "src");
    lua_pushinteger(L, h.src.isIp() ? h.src.port() : 0);
    lua_setfield(L, -2, "src_port");
    lua_pushlstring(L, d.data(), d.size());
    lua_setfield(L, -2, "dst");
    lua_pushinteger(L, h.dst.isIp() ? h.dst.port() : 0);
    lua_setfield(L, -2, "dst_port");
  }
  lua_createtable(L, 0, static_cast<int>(h.tlvs.size()));
  for (const auto& t : h.tlvs) {
    lua_pushlstring(L, t.value.data(), t.value.size());
    lua_rawseti(L, -2, t.type);
  }
  lua_setfield(L, -2, "tlv");
  auto set = [&](const char* name, std::optional<std::string_view> v) {
    if (!v) return;
    lua_pushlstring(L, v->data(), v->size());
    lua_setfield(L, -2, name);
  };
  set("alpn", h.alpn());
  set("authority", h.authority());
  set("unique_id", h.uniqueId());
  if (auto ssl = h.ssl()) {
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, ssl->version.data(), ssl->version.size());
    lua_setfield(L, -2, "version");
    lua_pushlstring(L, ssl->cipher.data(), ssl->cipher.size());
    lua_setfield(L, -2, "cipher");
    lua_pushlstring(L, ssl->cn.data(), ssl->cn.size());
    lua_setfield(L, -2, "cn");
    lua_pushinteger(L, static_cast<lua_Integer>(ssl->verify));
    lua_setfield(L, -2, "verify");
    auto flag = [&](const char* name, bool v) {
      lua_pushboolean(L, v ? 1 : 0);
      lua_setfield(L, -2, name);
    };
    flag("client_ssl", (ssl->client & core::proxy::kClientSsl) != 0);
    flag("cert_conn", (ssl->client & core::proxy::kClientCertConn) != 0);
    flag("cert_sess", (ssl->client & core::proxy::kClientCertSess) != 0);
    flag("verified", ssl->verified());
    lua_setfield(L, -2, "ssl");
  }
}

int txnReadOnly(lua_State* L) {
  return raiseFormat(L, "txn is read-only (keep your data in local variables)");
}

}  // namespace

void registerTxn(lua_State* L) {
  static const luaL_Reg kTxnMethods[] = {
      {"reply", &guarded<txnReply>},
      {"deny", &guarded<txnDeny>},
      {"use_backend", &guarded<txnUseBackend>},
      {nullptr, nullptr},
  };
  registerHeads(L);
  newHandleMeta(L, kTxnMeta, "txn", kTxnMethods, &guarded<txnIndex>, &guarded<txnReadOnly>);
}

namespace {
// The txn userdata: its handle first (what checkCall reads), then the state it points to.
struct TxnBox {
  Handle handle;
  ActiveCall call;
};
}  // namespace

// The txn's own environment table, replacing the shared empty one first.
void pushTxnEnv(lua_State* L, int idx) {
  idx = absIndex(L, idx);
  lua_getfenv(L, idx);
  lua_pushlightuserdata(L, &kSharedEnvKey);
  lua_rawget(L, LUA_REGISTRYINDEX);
  bool shared = lua_rawequal(L, -1, -2) != 0;
  lua_pop(L, 1);
  if (!shared) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, -1);
  lua_setfenv(L, idx);
}

ActiveCall& pushNewTxn(lua_State* L) {
  auto* box = static_cast<TxnBox*>(lua_newuserdata(L, sizeof(TxnBox)));
  new (&box->call) ActiveCall();
  box->call.active = true;
  box->handle.call = &box->call;
  box->handle.serial = 0;
  pushMetatable(L, kTxnMeta);
  lua_setmetatable(L, -2);
  // The environment starts as one shared empty table; txn.req, txn.resp and txn.ctx give
  // the txn its own on first use (txnIndex).
  lua_pushlightuserdata(L, &kSharedEnvKey);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlightuserdata(L, &kSharedEnvKey);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_setfenv(L, -2);
  return box->call;
}

bool pushOriginField(lua_State* L, std::string_view key, const core::RequestContext& ctx) {
  if (key == "src" || key == "dst") {
    std::string ip = (key == "src" ? ctx.src : ctx.dst).ip();
    lua_pushlstring(L, ip.data(), ip.size());
    return true;
  }
  if (key == "src_port" || key == "dst_port") {
    lua_pushinteger(L, (key == "src_port" ? ctx.src : ctx.dst).port());
    return true;
  }
  if (key == "frontend") {
    lua_pushlstring(L, ctx.frontend.data(), ctx.frontend.size());
    return true;
  }
  return false;
}

}  // namespace crescent::lua
