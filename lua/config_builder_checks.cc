// The health check and agent settings of a server, from the sealed config table
// (stdlib/config.lua has merged the backend's and defaults' into each server's).
#include <string>
#include <utility>

#include "lua/config_builder_parts.h"
#include "lua/lua_util.h"

namespace crescent::lua {

using core::Status;

namespace {

// check.type (HAProxy's option mysql-check / pgsql-check / redis-check / smtpchk): sets
// c.kind and refuses keys that contradict it (an http request on a mysql check, a user
// on a redis check).
Status applyCheckType(const Loc& at, const std::string& type, bool has_http, bool has_user,
                      bool has_domain, core::HealthCheckConfig& c) {
  using Kind = core::HealthCheckConfig::Kind;
  static constexpr std::pair<const char*, Kind> kTypes[] = {
      {"tcp", Kind::kTcp},     {"http", Kind::kHttp},   {"mysql", Kind::kMysql},
      {"pgsql", Kind::kPgsql}, {"redis", Kind::kRedis}, {"smtp", Kind::kSmtp},
  };
  Kind kind = c.kind;
  for (const auto& [name, k] : kTypes)
    if (type == name) kind = k;
  auto refuse = [&](const std::string& key) {
    return Status::error(at.prefix() + "check.type = \"" + type +
                         "\" cannot be combined with check." + key);
  };
  bool protocol = kind != Kind::kTcp && kind != Kind::kHttp;
  if (has_http && kind != Kind::kHttp) return refuse("http");
  if (!c.send.empty() && kind != Kind::kTcp) return refuse("send");
  if (protocol && !c.expect_body.empty()) return refuse("expect_body");
  if (protocol && c.expect_hook > 0) return refuse("expect");
  if (protocol && !c.expect_status.empty()) return refuse("expect");
  if (has_user && kind != Kind::kMysql && kind != Kind::kPgsql) {
    return Status::error(at.prefix() + "check.user applies to type = \"mysql\" or \"pgsql\"" +
                         (type.empty() ? std::string() : " (this check is \"" + type + "\")"));
  }
  if (has_domain && kind != Kind::kSmtp)
    return Status::error(at.prefix() + "check.domain applies to type = \"smtp\"");
  if (kind == Kind::kPgsql && c.user.empty())
    return Status::error(at.prefix() + "check.type = \"pgsql\" needs check.user");
  auto bad = [](const std::string& v) {
    return v.find_first_of(std::string_view("\0\r\n", 3)) != std::string::npos;
  };
  if (bad(c.user)) return Status::error(at.prefix() + "check.user must not hold NUL, CR or LF");
  if (c.user.size() > 255)
    return Status::error(at.prefix() + "check.user is longer than 255 bytes");
  if (bad(c.domain) || c.domain.empty())
    return Status::error(at.prefix() + "check.domain must be a non-empty name without CR or LF");
  c.kind = kind;
  return Status();
}

}  // namespace

// `agent = { port, inter, send, addr }` (HAProxy's agent-port, agent-inter, agent-send,
// agent-addr), merged by stdlib/config.lua (server over backend). Without addr the agent
// is on the server's IP.
Status readAgent(lua_State* L, int idx, const Loc& at, const core::ServerConfig& s,
                 core::AgentCheckConfig& a) {
  lua_getfield(L, idx, "agent");
  int t = lua_gettop(L);
  if (!lua_istable(L, t)) {
    lua_settop(L, t - 1);
    return Status();
  }
  auto port = intField(L, t, "port");
  std::string addr = stringField(L, t, "addr").value_or("");
  a.send = stringField(L, t, "send").value_or("");
  if (auto v = intField(L, t, "inter")) a.inter = static_cast<uint64_t>(*v);
  lua_settop(L, t - 1);
  if (!port) return Status::error(at.prefix() + "agent.port is required (the agent's TCP port)");
  if (a.inter == 0) return Status::error(at.prefix() + "agent.inter must be more than 0 ms");
  if (addr.empty()) {
    if (!s.address.isIp()) {
      return Status::error(at.prefix() +
                           "agent.addr is required for a server that is not an IP "
                           "address (" +
                           s.text + ")");
    }
    a.address = s.address;
  } else {
    bool v6 = addr.find(':') != std::string::npos;
    auto parsed = core::Address::parse((v6 ? "[" + addr + "]" : addr) + ":1");
    if (!parsed.ok() || !parsed->isIp()) {
      return Status::error(at.prefix() + "agent.addr must be an IP address (got \"" + addr + "\")");
    }
    a.address = *parsed;
  }
  a.address.setPort(static_cast<uint16_t>(*port));
  a.enabled = true;
  return Status();
}

Status readCheck(lua_State* L, int idx, const Loc& at, core::HealthCheckConfig& c) {
  lua_getfield(L, idx, "check");
  int t = lua_gettop(L);
  if (!lua_istable(L, t)) {
    lua_settop(L, t - 1);
    return Status();
  }
  c.enabled = boolField(L, t, "enabled").value_or(false);
  if (auto http = stringField(L, t, "http")) {
    c.kind = core::HealthCheckConfig::Kind::kHttp;
    // "GET /health" or "/health"; the method is a token, the URI starts with '/'.
    std::string_view v = *http;
    size_t sp = v.find(' ');
    std::string_view method = sp == std::string_view::npos ? "GET" : v.substr(0, sp);
    std::string_view uri = sp == std::string_view::npos ? v : v.substr(sp + 1);
    while (!uri.empty() && uri.front() == ' ') uri.remove_prefix(1);
    bool ok = !method.empty() && !uri.empty() && uri.front() == '/' &&
              uri.find_first_of(" \r\n\t") == std::string_view::npos;
    for (char ch : method) ok = ok && ch >= 'A' && ch <= 'Z';
    if (!ok) {
      lua_settop(L, t - 1);
      return Status::error(at.prefix() + "check.http must be \"METHOD /path\" (got \"" +
                           std::string(v) + "\")");
    }
    c.method = std::string(method);
    c.uri = std::string(uri);
  }
  c.host = stringField(L, t, "host").value_or("");
  c.send = stringField(L, t, "send").value_or("");
  c.expect_body = stringField(L, t, "expect_body").value_or("");
  c.expect_hook = static_cast<int>(intField(L, t, "expect_hook").value_or(0));
  lua_getfield(L, t, "expect");
  if (lua_istable(L, -1)) {
    size_t n = lua_objlen(L, -1);
    for (size_t i = 1; i <= n; ++i) {
      lua_rawgeti(L, -1, static_cast<int>(i));
      if (lua_istable(L, -1)) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        c.expect_status.emplace_back(static_cast<int>(lua_tointeger(L, -2)),
                                     static_cast<int>(lua_tointeger(L, -1)));
        lua_pop(L, 2);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  auto u64 = [&](const char* k, uint64_t& v) {
    if (auto x = intField(L, t, k)) v = static_cast<uint64_t>(*x);
  };
  u64("inter", c.inter);
  u64("fastinter", c.fastinter);
  u64("downinter", c.downinter);
  u64("timeout", c.timeout);
  c.rise = static_cast<int>(intField(L, t, "rise").value_or(c.rise));
  c.fall = static_cast<int>(intField(L, t, "fall").value_or(c.fall));
  c.port = static_cast<uint16_t>(intField(L, t, "port").value_or(0));
  std::string observe = stringField(L, t, "observe").value_or("");
  if (observe == "layer4") c.observe = core::HealthCheckConfig::Observe::kLayer4;
  if (observe == "layer7") c.observe = core::HealthCheckConfig::Observe::kLayer7;
  c.error_limit = static_cast<int>(intField(L, t, "error_limit").value_or(c.error_limit));
  std::string type = stringField(L, t, "type").value_or("");
  c.user = stringField(L, t, "user").value_or("");
  if (auto d = stringField(L, t, "domain")) c.domain = *d;
  bool has_http = c.kind == core::HealthCheckConfig::Kind::kHttp;
  bool has_user = stringField(L, t, "user").has_value();
  bool has_domain = stringField(L, t, "domain").has_value();
  lua_settop(L, t - 1);
  if (c.inter == 0) return Status::error(at.prefix() + "check.inter must be more than 0 ms");
  return applyCheckType(at, type, has_http, has_user, has_domain, c);
}

}  // namespace crescent::lua
