#include "lua/config_builder.h"

#include <lua.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "core/config/acl.h"
#include "core/net/address.h"
#include "lua/lua_util.h"

namespace crescent::lua {

using core::AclNode;
using core::Result;
using core::Status;

namespace {

constexpr int kMaxAclDepth = 200;

// Where an object was declared, for error prefixes: "file:line: label: ".
struct Loc {
  std::string file;
  int line = 0;
  std::string label;

  std::string prefix(int at_line = 0) const {
    return file + ":" + std::to_string(at_line > 0 ? at_line : line) + ": " + label + ": ";
  }
};

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

Status readServer(lua_State* L, int idx, const Loc& backend, core::BackendConfig& be) {
  core::ServerConfig s;
  s.name = stringField(L, idx, "name").value_or("");
  s.text = stringField(L, idx, "text").value_or("");
  s.weight = static_cast<int>(intField(L, idx, "weight").value_or(s.weight));
  s.maxconn = static_cast<int>(intField(L, idx, "maxconn").value_or(s.maxconn));
  Loc at = locOf(L, idx, backend.label + ": server \"" + s.name + "\"");
  s.line = at.line;
  auto addr = core::Address::parse(s.text);
  if (!addr.ok()) return Status::error(at.prefix() + addr.message());
  s.address = *addr;
  be.servers.push_back(std::move(s));
  return Status();
}

Status readBackend(lua_State* L, int idx, core::Config& cfg) {
  core::BackendConfig be;
  Loc loc = locOf(L, idx);
  be.name = stringField(L, idx, "name").value_or("");
  be.line = loc.line;
  be.mode = modeOf(L, idx);
  readTimeouts(L, idx, be.timeout);
  be.balance = stringField(L, idx, "balance").value_or(be.balance);
  be.retries = static_cast<int>(intField(L, idx, "retries").value_or(be.retries));
  be.redispatch = boolField(L, idx, "redispatch").value_or(be.redispatch);
  be.forwardfor = boolField(L, idx, "forwardfor").value_or(be.forwardfor);
  be.service_hook = static_cast<int>(intField(L, idx, "service_hook").value_or(0));
  Status st = forEach(L, idx, "servers", [&](int s) { return readServer(L, s, loc, be); });
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
  fe.default_backend = stringField(L, idx, "default_backend").value_or("");
  if (!fe.default_backend.empty()) {
    fe.default_backend_index =
        static_cast<int>(intField(L, idx, "default_backend_index").value_or(-1));
  }
  Status st = forEach(L, idx, "binds", [&](int b) { return readBind(L, b, loc, fe); });
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
  }
  lua_settop(L, top);

  Status st = forEach(L, idx, "backends", [&](int b) { return readBackend(L, b, *cfg); });
  if (st.ok()) st = forEach(L, idx, "frontends", [&](int f) { return readFrontend(L, f, *cfg); });
  lua_settop(L, top);
  if (!st.ok()) return st;
  return cfg;
}

}  // namespace crescent::lua
