#include "lua/config_builder.h"

#include <lua.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/acl.h"
#include "core/net/address.h"
#include "core/proto/http1.h"
#include "lua/config_builder_parts.h"
#include "lua/lua_util.h"

namespace crescent::lua {

using core::AclNode;
using core::Result;
using core::Status;

namespace {

constexpr int kMaxAclDepth = 200;

// Octal permissions, e.g. "0660" or "660"; -1 when not that.
int parseOctalMode(const std::string& text) {
  if (text.empty() || text.size() > 4) return -1;
  int m = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return -1;
    m = m * 8 + (c - '0');
  }
  return m;
}

// t[key] as a list of integers appended to `out` (validated by stdlib/schema.lua);
// nothing when absent.
void readIntList(lua_State* L, int t, const char* key, std::vector<int>& out) {
  lua_getfield(L, t, key);
  if (lua_istable(L, -1)) {
    for (size_t i = 1, n = lua_objlen(L, -1); i <= n; ++i) {
      lua_rawgeti(L, -1, static_cast<int>(i));
      out.push_back(static_cast<int>(lua_tointeger(L, -1)));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

Loc locOf(lua_State* L, int idx, const std::string& label = {}) {
  Loc loc;
  loc.file = stringField(L, idx, "file").value_or("?");
  loc.line = static_cast<int>(intField(L, idx, "line").value_or(0));
  loc.label = label.empty() ? stringField(L, idx, "label").value_or("?") : label;
  return loc;
}

core::Mode modeOf(lua_State* L, int idx) {
  return stringField(L, idx, "mode").value_or("http") == "tcp" ? core::Mode::kTcp
                                                               : core::Mode::kHttp;
}

void readTimeouts(lua_State* L, int idx, core::Timeouts& t) {
  lua_getfield(L, idx, "timeout");
  if (lua_istable(L, -1)) {
    int tt = lua_gettop(L);
    struct Field {
      const char* key;
      uint64_t core::Timeouts::*member;
    };
    static constexpr Field kFields[] = {
        {"connect", &core::Timeouts::connect},
        {"client", &core::Timeouts::client},
        {"server", &core::Timeouts::server},
        {"tunnel", &core::Timeouts::tunnel},
        {"queue", &core::Timeouts::queue},
        {"http_request", &core::Timeouts::http_request},
        {"http_keep_alive", &core::Timeouts::http_keep_alive},
        {"client_fin", &core::Timeouts::client_fin},
        {"server_fin", &core::Timeouts::server_fin},
        {"handshake", &core::Timeouts::handshake},
    };
    for (const Field& f : kFields) {
      if (auto v = intField(L, tt, f.key)) t.*f.member = static_cast<uint64_t>(*v);
    }
  }
  lua_pop(L, 1);
}

// ACL descriptors ------------------------------------------------------------------

template <class E, size_t N>
bool lookupEnum(std::string_view s, const std::pair<const char*, E> (&table)[N], E& out) {
  for (const auto& [name, value] : table) {
    if (s == name) {
      out = value;
      return true;
    }
  }
  return false;
}

constexpr std::pair<const char*, AclNode::Kind> kKinds[] = {
    {"match", AclNode::Kind::kMatch},
    {"all", AclNode::Kind::kAll},
    {"any", AclNode::Kind::kAny},
    {"not", AclNode::Kind::kNot},
};
constexpr std::pair<const char*, AclNode::Fetch> kFetches[] = {
    {"path", AclNode::Fetch::kPath},        {"url_param", AclNode::Fetch::kUrlParam},
    {"hdr", AclNode::Fetch::kHdr},          {"host", AclNode::Fetch::kHost},
    {"method", AclNode::Fetch::kMethod},    {"src", AclNode::Fetch::kSrc},
    {"dst_port", AclNode::Fetch::kDstPort},
};
constexpr std::pair<const char*, AclNode::Op> kOps[] = {
    {"eq", AclNode::Op::kEq},     {"beg", AclNode::Op::kBeg},
    {"end", AclNode::Op::kEnd},   {"sub", AclNode::Op::kSub},
    {"reg", AclNode::Op::kReg},   {"found", AclNode::Op::kFound},
    {"cidr", AclNode::Op::kCidr}, {"port_range", AclNode::Op::kPortRange},
};

// Reads the ACL descriptor at `idx`; `files` receives each leaf's file in DFS order.
Status readAcl(lua_State* L, int idx, AclNode& node, std::vector<std::string>& files, int depth) {
  idx = absIndex(L, idx);
  if (!lua_istable(L, idx)) return Status::error("invalid ACL descriptor");
  if (depth > kMaxAclDepth) return Status::error("ACL nested too deeply");
  std::string kind = stringField(L, idx, "kind").value_or("");
  if (!lookupEnum(kind, kKinds, node.kind)) return Status::error("invalid ACL kind " + kind);
  node.line = static_cast<int>(intField(L, idx, "line").value_or(0));
  if (node.kind != AclNode::Kind::kMatch) {
    lua_getfield(L, idx, "children");
    int ct = lua_gettop(L);
    size_t n = lua_istable(L, ct) ? lua_objlen(L, ct) : 0;
    node.children.resize(n);
    for (size_t i = 0; i < n; ++i) {
      lua_rawgeti(L, ct, static_cast<int>(i + 1));
      Status st = readAcl(L, -1, node.children[i], files, depth + 1);
      lua_pop(L, 1);
      if (!st.ok()) {
        lua_settop(L, ct - 1);
        return st;
      }
    }
    lua_pop(L, 1);
    return Status();
  }
  files.push_back(stringField(L, idx, "file").value_or("?"));
  std::string fetch = stringField(L, idx, "fetch").value_or("");
  std::string op = stringField(L, idx, "op").value_or("");
  if (!lookupEnum(fetch, kFetches, node.fetch)) return Status::error("invalid ACL fetch " + fetch);
  if (!lookupEnum(op, kOps, node.op)) return Status::error("invalid ACL operator " + op);
  node.arg = stringField(L, idx, "arg").value_or("");
  node.nocase = boolField(L, idx, "nocase").value_or(false);
  lua_getfield(L, idx, "values");
  if (lua_istable(L, -1)) {
    size_t n = lua_objlen(L, -1);
    for (size_t i = 1; i <= n; ++i) {
      lua_rawgeti(L, -1, static_cast<int>(i));
      size_t len = 0;
      const char* s = lua_tolstring(L, -1, &len);
      if (s != nullptr) node.values.emplace_back(s, len);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return Status();
}

void collectLeaves(const AclNode& node, std::vector<const AclNode*>& out) {
  if (node.kind == AclNode::Kind::kMatch) {
    out.push_back(&node);
    return;
  }
  for (const AclNode& c : node.children) collectLeaves(c, out);
}

// Compiles the ACL at `idx`. On error, finds the leaf at fault to name its line.
Result<std::shared_ptr<const core::Acl>> compileAcl(lua_State* L, int idx, const Loc& rule) {
  AclNode node;
  std::vector<std::string> files;
  if (Status st = readAcl(L, idx, node, files, 0); !st.ok()) {
    return Status::error(rule.prefix() + st.message());
  }
  auto acl = core::Acl::compile(node);
  if (acl.ok()) return *acl;
  std::vector<const AclNode*> leaves;
  collectLeaves(node, leaves);
  for (size_t i = 0; i < leaves.size() && i < files.size(); ++i) {
    auto one = core::Acl::compile(*leaves[i]);
    if (!one.ok()) {
      Loc at = rule;
      at.file = files[i];
      return Status::error(at.prefix(leaves[i]->line) + one.message());
    }
  }
  return Status::error(rule.prefix() + acl.message());
}

// Sections ---------------------------------------------------------------------------

// Runs fn(index) for each element of the array field `key` of the table at `idx`, with
// the element on top of the stack. Stops at the first error.
template <class Fn>
Status forEach(lua_State* L, int idx, const char* key, Fn&& fn) {
  int top = lua_gettop(L);
  lua_getfield(L, idx, key);
  int arr = lua_gettop(L);
  size_t n = lua_istable(L, arr) ? lua_objlen(L, arr) : 0;
  for (size_t i = 1; i <= n; ++i) {
    lua_rawgeti(L, arr, static_cast<int>(i));
    Status st = fn(lua_gettop(L));
    if (!st.ok()) {
      lua_settop(L, top);
      return st;
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  return Status();
}

// Parses one `source` element: "ip" or "ip:lo-hi" (IPv6 as "[ip]:lo-hi").
Status parseSourceOne(std::string_view text, core::SourceConfig& out) {
  std::string ip(text);
  uint16_t lo = 0, hi = 0;
  size_t dash = text.rfind('-');
  size_t colon = text.rfind(':');
  bool bracketed = !text.empty() && text.front() == '[';
  if (dash != std::string_view::npos && colon != std::string_view::npos && colon < dash &&
      (bracketed || text.find(':') == colon)) {
    auto num = [](std::string_view d, uint16_t& v) {
      if (d.empty() || d.size() > 5) return false;
      unsigned n = 0;
      for (char c : d) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + static_cast<unsigned>(c - '0');
      }
      if (n == 0 || n > 65535) return false;
      v = static_cast<uint16_t>(n);
      return true;
    };
    if (!num(text.substr(colon + 1, dash - colon - 1), lo) || !num(text.substr(dash + 1), hi) ||
        lo > hi) {
      return Status::error("source \"" + std::string(text) +
                           "\": the port range must be lo-hi with 1 <= lo <= hi <= 65535");
    }
    ip = std::string(text.substr(0, colon));
    if (bracketed) {
      if (ip.size() < 2 || ip.back() != ']')
        return Status::error("source \"" + std::string(text) + "\": bad IPv6 address");
      ip = ip.substr(1, ip.size() - 2);
    }
    if (out.port_min != 0 && (out.port_min != lo || out.port_max != hi)) {
      return Status::error("source: every address must use the same port range");
    }
    if (out.port_min == 0 && !out.addresses.empty()) {
      return Status::error("source: a port range must be given for every address or none");
    }
    out.port_min = lo;
    out.port_max = hi;
  } else if (out.port_min != 0) {
    return Status::error("source: a port range must be given for every address or none");
  }
  auto addr =
      core::Address::parse(ip.find(':') != std::string::npos ? "[" + ip + "]:0" : ip + ":0");
  if (!addr.ok() || !addr->isIp()) {
    return Status::error("source \"" + std::string(text) +
                         "\": expected an IP address, optionally with a port range (\"127.0.0.2\", "
                         "\"127.0.0.2:20000-30000\")");
  }
  out.addresses.push_back(*addr);
  return Status();
}

Status readSource(lua_State* L, int idx, const Loc& at, core::SourceConfig& out) {
  lua_getfield(L, idx, "source");
  int t = lua_gettop(L);
  Status st;
  if (lua_istable(L, t)) {
    int line = at.line;
    size_t n = lua_objlen(L, t);
    for (size_t i = 1; i <= n && st.ok(); ++i) {
      lua_rawgeti(L, t, static_cast<int>(i));
      size_t len = 0;
      const char* s = lua_tolstring(L, -1, &len);
      if (s != nullptr) st = parseSourceOne({s, len}, out);
      lua_pop(L, 1);
    }
    if (!st.ok()) st = Status::error(at.prefix(line) + st.message());
  }
  lua_settop(L, t - 1);
  return st;
}

// Reads the array of strings at field `key` of the table at `idx` (absent: unchanged).
void readStrings(lua_State* L, int idx, const char* key, std::vector<std::string>& out) {
  lua_getfield(L, idx, key);
  if (lua_istable(L, -1)) {
    out.clear();
    size_t n = lua_objlen(L, -1);
    for (size_t i = 1; i <= n; ++i) {
      lua_rawgeti(L, -1, static_cast<int>(i));
      size_t len = 0;
      const char* v = lua_tolstring(L, -1, &len);
      if (v != nullptr) out.emplace_back(v, len);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

void readCompression(lua_State* L, int idx, core::CompressionConfig& c) {
  lua_getfield(L, idx, "compression");
  int t = lua_gettop(L);
  if (lua_istable(L, t)) {
    c.enabled = true;
    readStrings(L, t, "algo", c.algos);
    readStrings(L, t, "types", c.types);
    for (auto& ty : c.types)
      for (char& ch : ty) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    c.min_size = static_cast<uint64_t>(intField(L, t, "min_size").value_or(c.min_size));
    c.level = static_cast<int>(intField(L, t, "level").value_or(c.level));
  }
  lua_settop(L, t - 1);
}

void readServerTls(lua_State* L, int idx, core::TlsServerConfig& tls) {
  lua_getfield(L, idx, "tls");
  int t = lua_gettop(L);
  if (lua_istable(L, t)) {
    tls.enabled = true;
    tls.verify = stringField(L, t, "verify").value_or("required") == "required";
    tls.ca = stringField(L, t, "ca").value_or("");
    tls.sni = stringField(L, t, "sni").value_or("");
    readStrings(L, t, "alpn", tls.alpn);
    tls.cert = stringField(L, t, "cert").value_or("");
    tls.key = stringField(L, t, "key").value_or("");
    tls.min_version = stringField(L, t, "min_version").value_or("");
  }
  lua_settop(L, t - 1);
}

Status readServer(lua_State* L, int idx, const Loc& backend, core::BackendConfig& be) {
  core::ServerConfig s;
  s.name = stringField(L, idx, "name").value_or("");
  s.text = stringField(L, idx, "text").value_or("");
  s.id = static_cast<int>(be.servers.size() + 1);
  s.weight = static_cast<int>(intField(L, idx, "weight").value_or(s.weight));
  s.maxconn = static_cast<int>(intField(L, idx, "maxconn").value_or(s.maxconn));
  s.maxqueue = static_cast<int>(intField(L, idx, "maxqueue").value_or(s.maxqueue));
  s.backup = boolField(L, idx, "backup").value_or(false);
  s.slowstart = static_cast<uint64_t>(intField(L, idx, "slowstart").value_or(0));
  Loc at = locOf(L, idx, backend.label + ": server \"" + s.name + "\"");
  s.line = at.line;
  auto addr = core::Address::parse(s.text);
  if (!addr.ok()) return Status::error(at.prefix() + addr.message());
  s.address = *addr;
  if (Status st = readCheck(L, idx, at, s.check); !st.ok()) return st;
  if (Status st = readAgent(L, idx, at, s, s.agent); !st.ok()) return st;
  if (Status st = readSource(L, idx, at, s.source); !st.ok()) return st;
  std::string sp = stringField(L, idx, "send_proxy").value_or("");
  s.send_proxy = sp == "v1" ? 1 : sp == "v2" ? 2 : 0;
  std::vector<std::string> opts;
  readStrings(L, idx, "proxy_v2_options", opts);
  for (const auto& o : opts) {
    if (o == "ssl") s.proxy_v2_options |= core::kProxyV2Ssl;
    if (o == "authority") s.proxy_v2_options |= core::kProxyV2Authority;
    if (o == "alpn") s.proxy_v2_options |= core::kProxyV2Alpn;
    if (o == "unique_id") s.proxy_v2_options |= core::kProxyV2UniqueId;
    if (o == "crc32c") s.proxy_v2_options |= core::kProxyV2Crc32c;
  }
  if (s.proxy_v2_options != 0 && s.send_proxy != 2) {
    return Status::error(at.prefix() + "proxy_v2_options needs send_proxy = \"v2\"");
  }
  readServerTls(L, idx, s.tls);
  if (!s.source.empty() && !s.address.isIp()) {
    return Status::error(at.prefix() + "source applies to IP servers only (this one is " + s.text +
                         ")");
  }
  be.servers.push_back(std::move(s));
  return Status();
}

// "roundrobin", "static-rr", ..., "hdr(name)", "url_param(name)" (checked by the schema).
void readBalance(std::string_view text, core::BackendConfig& be) {
  using core::BalanceAlgo;
  static constexpr std::pair<const char*, BalanceAlgo> kAlgos[] = {
      {"roundrobin", BalanceAlgo::kRoundRobin}, {"static-rr", BalanceAlgo::kStaticRr},
      {"leastconn", BalanceAlgo::kLeastConn},   {"first", BalanceAlgo::kFirst},
      {"source", BalanceAlgo::kSource},         {"uri", BalanceAlgo::kUri},
      {"random", BalanceAlgo::kRandom},
  };
  be.balance = std::string(text);
  size_t open = text.find('(');
  if (open != std::string_view::npos && text.back() == ')') {
    std::string_view fn = text.substr(0, open);
    std::string_view arg = text.substr(open + 1, text.size() - open - 2);
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    while (!arg.empty() && arg.back() == ' ') arg.remove_suffix(1);
    be.algo = fn == "hdr" ? BalanceAlgo::kHdr : BalanceAlgo::kUrlParam;
    be.balance_arg = std::string(arg);
    if (be.algo == BalanceAlgo::kHdr) {
      for (char& c : be.balance_arg)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return;
  }
  lookupEnum(text, kAlgos, be.algo);
}

// Reads and checks one errorfile (HAProxy's raw format): it parses as an HTTP/1 response
// head, its status is `status`, and the whole file fits `bufsize` bytes.
Status readErrorFile(const std::string& path, int status, uint64_t bufsize, core::ErrorFile& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("cannot read \"" + path + "\"");
  std::ostringstream text;
  text << in.rdbuf();
  std::string raw = text.str();
  if (raw.size() > bufsize) {
    return Status::error("\"" + path + "\" is " + std::to_string(raw.size()) +
                         " bytes, above tune.bufsize (" + std::to_string(bufsize) + ")");
  }
  core::HttpHead head;
  core::http1::HeadParser parser(raw.size() + 1);
  core::http1::Error err;
  auto r = parser.parseResponse(raw, head, err);
  if (r == core::http1::ParseResult::kIncomplete)
    return Status::error("\"" + path +
                         "\": no complete response head (status line, fields, "
                         "empty line)");
  if (r == core::http1::ParseResult::kError)
    return Status::error("\"" + path + "\": not an HTTP response: " + err.reason);
  if (head.status != status) {
    return Status::error("\"" + path + "\" has status " + std::to_string(head.status) +
                         ", configured for " + std::to_string(status));
  }
  out.status = status;
  out.reason = std::string(head.reason);
  out.path = path;
  for (const auto& f : head.headers) {
    if (core::equalsNoCase(f.name, "content-length") ||
        core::equalsNoCase(f.name, "transfer-encoding") || core::equalsNoCase(f.name, "connection"))
      continue;
    out.headers.emplace_back(std::string(f.name), std::string(f.value));
  }
  out.body = raw.substr(parser.headLength());
  return Status();
}

// t[key]: { hook = id, files = { { status, path, file, line, label }, ... } } (stdlib/
// config.lua errorPages); absent: no pages.
Status readErrorPages(lua_State* L, int t, const char* key, uint64_t bufsize,
                      core::ErrorPages& out) {
  lua_getfield(L, t, key);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return Status();
  }
  int pages = lua_gettop(L);
  out.hook = static_cast<int>(intField(L, pages, "hook").value_or(0));
  Status st = forEach(L, pages, "files", [&](int f) {
    Loc at = locOf(L, f);
    int status = static_cast<int>(intField(L, f, "status").value_or(0));
    std::string path = stringField(L, f, "path").value_or("");
    core::ErrorFile file;
    Status one = readErrorFile(path, status, bufsize, file);
    if (!one.ok()) {
      return Status::error(at.prefix() + "errorfiles[" + std::to_string(status) +
                           "]: " + one.message());
    }
    out.files.emplace(status, std::move(file));
    return Status();
  });
  lua_settop(L, pages - 1);
  return st;
}

Status readBackend(lua_State* L, int idx, core::Config& cfg) {
  core::BackendConfig be;
  Loc loc = locOf(L, idx);
  be.name = stringField(L, idx, "name").value_or("");
  be.line = loc.line;
  be.mode = modeOf(L, idx);
  readTimeouts(L, idx, be.timeout);
  readBalance(stringField(L, idx, "balance").value_or(be.balance), be);
  if (stringField(L, idx, "hash_type").value_or("") == "consistent")
    be.hash_type = core::HashType::kConsistent;
  lua_getfield(L, idx, "lua_balancer");
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    be.lua_balancer.name = stringField(L, t, "name").value_or("");
    be.lua_balancer.pick_hook = static_cast<int>(intField(L, t, "pick_hook").value_or(0));
    be.lua_balancer.init_hook = static_cast<int>(intField(L, t, "init_hook").value_or(0));
    be.lua_balancer.release_hook = static_cast<int>(intField(L, t, "release_hook").value_or(0));
    be.balance = be.lua_balancer.name;
  }
  lua_pop(L, 1);
  be.retries = static_cast<int>(intField(L, idx, "retries").value_or(be.retries));
  be.redispatch = boolField(L, idx, "redispatch").value_or(be.redispatch);
  be.forwardfor = boolField(L, idx, "forwardfor").value_or(be.forwardfor);
  be.service_hook = static_cast<int>(intField(L, idx, "service_hook").value_or(0));
  be.http_response_hook = static_cast<int>(intField(L, idx, "http_response_hook").value_or(0));
  lua_getfield(L, idx, "pool");
  if (lua_istable(L, -1)) {
    int p = lua_gettop(L);
    be.pool_idle_timeout =
        static_cast<uint64_t>(intField(L, p, "idle_timeout").value_or(be.pool_idle_timeout));
    be.pool_max_idle = static_cast<int>(intField(L, p, "max_idle").value_or(be.pool_max_idle));
  }
  lua_pop(L, 1);
  if (auto reuse = stringField(L, idx, "http_reuse")) {
    be.http_reuse = *reuse == "never"    ? core::HttpReuse::kNever
                    : *reuse == "always" ? core::HttpReuse::kAlways
                                         : core::HttpReuse::kSafe;
  }
  readCompression(L, idx, be.compression);
  Status st = readErrorPages(L, idx, "errors", cfg.global.bufsize, be.errors);
  if (st.ok()) st = readErrorPages(L, idx, "default_errors", cfg.global.bufsize, be.default_errors);
  if (st.ok()) st = forEach(L, idx, "servers", [&](int s) { return readServer(L, s, loc, be); });
  if (!st.ok()) return st;
  cfg.backends.push_back(std::move(be));
  return Status();
}

Status readBind(lua_State* L, int idx, const Loc& frontend, core::FrontendConfig& fe) {
  core::BindConfig b;
  b.text = stringField(L, idx, "text").value_or("");
  Loc at = locOf(L, idx, frontend.label + ": bind");
  b.line = at.line;
  auto addr = core::Address::parse(b.text);
  if (!addr.ok()) return Status::error(at.prefix() + addr.message());
  b.address = *addr;
  b.accept_proxy = boolField(L, idx, "accept_proxy").value_or(false);
  b.user = stringField(L, idx, "user").value_or("");
  b.group = stringField(L, idx, "group").value_or("");
  if (auto mode = stringField(L, idx, "mode")) {
    int m = parseOctalMode(*mode);
    if (m < 0) {
      return Status::error(at.prefix() + "mode must be octal permissions like \"0660\" (got \"" +
                           *mode + "\")");
    }
    if (!b.address.isUnix())
      return Status::error(at.prefix() + "mode applies to UNIX sockets only");
    b.unix_mode = m;
  }
  if ((!b.user.empty() || !b.group.empty()) && !b.address.isUnix()) {
    return Status::error(at.prefix() + "user and group apply to UNIX sockets only");
  }
  readIntList(L, idx, "threads", b.threads);
  lua_getfield(L, idx, "tls");
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    lua_getfield(L, t, "certs");
    size_t n = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
    for (size_t i = 1; i <= n; ++i) {
      lua_rawgeti(L, -1, static_cast<int>(i));
      core::TlsBindConfig::Cert c;
      c.cert = stringField(L, -1, "cert").value_or("");
      c.key = stringField(L, -1, "key").value_or("");
      b.tls.certs.push_back(std::move(c));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    readStrings(L, t, "alpn", b.tls.alpn);
    b.tls.min_version = stringField(L, t, "min_version").value_or("");
    b.tls.ciphers = stringField(L, t, "ciphers").value_or("");
    b.tls.ciphersuites = stringField(L, t, "ciphersuites").value_or("");
    b.tls.tickets = boolField(L, t, "tickets").value_or(true);
    std::string verify = stringField(L, t, "verify").value_or("none");
    b.tls.verify = verify == "required"   ? core::TlsBindConfig::Verify::kRequired
                   : verify == "optional" ? core::TlsBindConfig::Verify::kOptional
                                          : core::TlsBindConfig::Verify::kNone;
    b.tls.ca = stringField(L, t, "ca").value_or("");
    b.tls.crl = stringField(L, t, "crl").value_or("");
    b.tls.verify_depth = static_cast<int>(intField(L, t, "verify_depth").value_or(-1));
  }
  lua_pop(L, 1);
  fe.binds.push_back(std::move(b));
  return Status();
}

Status readRule(lua_State* L, int idx, const Loc& frontend, core::FrontendConfig& fe) {
  core::UseBackendRule r;
  r.backend = stringField(L, idx, "backend").value_or("");
  r.backend_index = static_cast<size_t>(intField(L, idx, "backend_index").value_or(0));
  Loc at = locOf(L, idx, frontend.label + ": use_backend \"" + r.backend + "\"");
  r.line = at.line;
  lua_getfield(L, idx, "when");
  if (!lua_isnil(L, -1)) {
    auto acl = compileAcl(L, lua_gettop(L), at);
    if (!acl.ok()) {
      lua_pop(L, 1);
      return acl.status();
    }
    r.when = *acl;
  }
  lua_pop(L, 1);
  fe.use_backend.push_back(std::move(r));
  return Status();
}

// The admin listener's settings (`fe.admin`, made by stdlib/config.lua's admin{}), or
// nothing when the frontend is not the admin listener.
void readAdmin(lua_State* L, int idx, core::FrontendConfig& fe) {
  lua_getfield(L, idx, "admin");
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    auto a = std::make_shared<core::AdminConfig>();
    Status ignored = forEach(L, t, "users", [&](int u) {
      a->users.push_back(
          {stringField(L, u, "name").value_or(""), stringField(L, u, "hash").value_or("")});
      return Status();
    });
    (void)ignored;
    readStrings(L, t, "tokens", a->tokens);
    readStrings(L, t, "read_only", a->read_only);
    a->metrics_prefix = stringField(L, t, "metrics_prefix").value_or(a->metrics_prefix);
    fe.admin = std::move(a);
  }
  lua_pop(L, 1);
}

Status readFrontend(lua_State* L, int idx, core::Config& cfg) {
  core::FrontendConfig fe;
  Loc loc = locOf(L, idx);
  fe.name = stringField(L, idx, "name").value_or("");
  fe.line = loc.line;
  fe.mode = modeOf(L, idx);
  readTimeouts(L, idx, fe.timeout);
  fe.maxconn = static_cast<int>(intField(L, idx, "maxconn").value_or(fe.maxconn));
  fe.forwardfor = boolField(L, idx, "forwardfor").value_or(fe.forwardfor);
  fe.log = boolField(L, idx, "log").value_or(fe.log);
  fe.http_request_hook = static_cast<int>(intField(L, idx, "http_request_hook").value_or(0));
  fe.http_response_hook = static_cast<int>(intField(L, idx, "http_response_hook").value_or(0));
  fe.log_hook = static_cast<int>(intField(L, idx, "log_hook").value_or(0));
  fe.tcp_request_hook = static_cast<int>(intField(L, idx, "tcp_request_hook").value_or(0));
  fe.inspect_delay =
      static_cast<uint64_t>(intField(L, idx, "inspect_delay").value_or(fe.inspect_delay));
  readCompression(L, idx, fe.compression);
  readAdmin(L, idx, fe);
  fe.default_backend = stringField(L, idx, "default_backend").value_or("");
  if (!fe.default_backend.empty()) {
    fe.default_backend_index =
        static_cast<int>(intField(L, idx, "default_backend_index").value_or(-1));
  }
  Status st = readErrorPages(L, idx, "errors", cfg.global.bufsize, fe.errors);
  if (st.ok()) st = readErrorPages(L, idx, "default_errors", cfg.global.bufsize, fe.default_errors);
  if (st.ok()) st = forEach(L, idx, "binds", [&](int b) { return readBind(L, b, loc, fe); });
  if (st.ok()) st = forEach(L, idx, "use_backend", [&](int r) { return readRule(L, r, loc, fe); });
  if (!st.ok()) return st;
  cfg.frontends.push_back(std::move(fe));
  return Status();
}

}  // namespace

Result<AclNode> aclNodeFromLua(lua_State* L, int idx) {
  AclNode node;
  std::vector<std::string> files;
  int top = lua_gettop(L);
  Status st = readAcl(L, idx, node, files, 0);
  lua_settop(L, top);
  if (!st.ok()) return st;
  return node;
}

Result<std::shared_ptr<core::Config>> buildConfigFromLua(lua_State* L, int idx) {
  idx = absIndex(L, idx);
  int top = lua_gettop(L);
  auto cfg = std::make_shared<core::Config>();

  lua_getfield(L, idx, "global");
  if (lua_istable(L, -1)) {
    int g = lua_gettop(L);
    core::GlobalConfig& gc = cfg->global;
    gc.threads = static_cast<int>(intField(L, g, "threads").value_or(gc.threads));
    gc.maxconn = static_cast<int>(intField(L, g, "maxconn").value_or(gc.maxconn));
    gc.bufsize = static_cast<uint64_t>(intField(L, g, "bufsize").value_or(gc.bufsize));
    gc.hard_stop_after =
        static_cast<uint64_t>(intField(L, g, "hard_stop_after").value_or(gc.hard_stop_after));
    gc.max_generations =
        static_cast<int>(intField(L, g, "max_generations").value_or(gc.max_generations));
    gc.watch = boolField(L, g, "watch").value_or(false);
    gc.lua_jit = boolField(L, g, "lua_jit").value_or(false);
    lua_getfield(L, g, "tune");
    if (lua_istable(L, -1)) {
      int t = lua_gettop(L);
      gc.max_headers = static_cast<size_t>(intField(L, t, "max_headers").value_or(101));
      gc.max_service_body = static_cast<uint64_t>(
          intField(L, t, "max_service_body").value_or(static_cast<int64_t>(gc.max_service_body)));
      gc.body_budget = static_cast<uint64_t>(
          intField(L, t, "body_budget").value_or(static_cast<int64_t>(gc.body_budget)));
    }
    lua_pop(L, 1);
    gc.watchdog_ms = static_cast<uint64_t>(intField(L, g, "watchdog").value_or(gc.watchdog_ms));
    if (auto v = stringField(L, g, "on_stuck"))
      gc.on_stuck =
          *v == "log" ? core::GlobalConfig::OnStuck::kLog : core::GlobalConfig::OnStuck::kAbort;
    lua_getfield(L, g, "lua");
    if (lua_istable(L, -1)) {
      int t = lua_gettop(L);
      auto& lc = gc.lua;
      lc.maxmem = static_cast<uint64_t>(intField(L, t, "maxmem").value_or(lc.maxmem));
      lc.budget_ms = static_cast<uint64_t>(intField(L, t, "budget").value_or(lc.budget_ms));
      lc.max_timers = static_cast<uint64_t>(intField(L, t, "max_timers").value_or(lc.max_timers));
    }
    lua_pop(L, 1);
    lua_getfield(L, g, "runtime");
    if (lua_istable(L, -1)) {
      // Validated by stdlib/config.lua (socket present, mode octal).
      int r = lua_gettop(L);
      gc.runtime.socket = stringField(L, r, "socket").value_or("");
      gc.runtime.expose_fd_listeners = boolField(L, r, "expose_fd_listeners").value_or(false);
      if (auto mode = stringField(L, r, "mode")) gc.runtime.mode = parseOctalMode(*mode);
      if (gc.runtime.mode < 0) gc.runtime.mode = 0600;
    }
    lua_pop(L, 1);
    lua_getfield(L, g, "cpu_map");
    if (lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        gc.cpu_map.emplace_back(static_cast<int>(lua_tointeger(L, -2)),
                                static_cast<int>(lua_tointeger(L, -1)));
        lua_pop(L, 1);
      }
      std::sort(gc.cpu_map.begin(), gc.cpu_map.end());
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);

  readIntList(L, idx, "reload_hooks", cfg->reload_hooks);
  auto readStrings = [L](int t, const char* key, std::vector<std::string>& out) {
    lua_getfield(L, t, key);
    if (lua_istable(L, -1)) {
      for (size_t i = 1, n = lua_objlen(L, -1); i <= n; ++i) {
        lua_rawgeti(L, -1, static_cast<int>(i));
        size_t len = 0;
        if (const char* f = lua_tolstring(L, -1, &len)) out.emplace_back(f, len);
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  };
  readStrings(idx, "files", cfg->files);
  readStrings(idx, "file_texts", cfg->file_texts);

  Status st = forEach(L, idx, "backends", [&](int b) { return readBackend(L, b, *cfg); });
  if (st.ok()) st = forEach(L, idx, "frontends", [&](int f) { return readFrontend(L, f, *cfg); });
  lua_settop(L, top);
  if (!st.ok()) return st;
  return cfg;
}

}  // namespace crescent::lua
