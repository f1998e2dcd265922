// txn.req and txn.resp (docs/lua-api.md): the request head and the response head of an
// exchange, read in every phase, edited in their own (the request in http_request, the
// response in http_response).

#include <string>

#include "lua/call_context.h"
#include "lua/http_util.h"
#include "lua/lua_util.h"

namespace crescent::lua {

namespace {

// The head behind the txn.req / txn.resp handle at index 1, and its call.
struct HeadRef {
  ActiveCall* call;
  core::HttpHead* head;
  bool request;
};

HeadRef headRef(lua_State* L) {
  auto* h = static_cast<Handle*>(lua_touserdata(L, 1));
  bool request = true;
  if (h != nullptr && lua_getmetatable(L, 1)) {
    pushMetatable(L, kRespMeta);
    request = !lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  ActiveCall& call = checkCall(L, 1, request ? kReqMeta : kRespMeta, "txn", "exchange");
  core::HttpHead* head = request ? &call.ctx->req : call.ctx->resp;
  if (head == nullptr) luaL_error(L, "txn.resp: there is no response yet");
  return {&call, head, request};
}

// Edits are for the head's own phases: the request in http_request and in the balancer's
// pick (before it is sent), the response in http_response (before it is sent).
int checkEditable(lua_State* L, const HeadRef& r, const char* method) {
  Phase p = r.call->phase;
  bool ok = r.request ? (p == Phase::kRequest || p == Phase::kBalancer) : p == Phase::kResponse;
  if (!ok) {
    return raiseFormat(L, "txn.%s:%s: the %s can only be changed in %s", r.request ? "req" : "resp",
                       method, r.request ? "request" : "response",
                       r.request ? "http_request or a balancer's pick" : "http_response");
  }
  return 0;
}

int headHeader(lua_State* L) {
  HeadRef r = headRef(L);
  std::string_view name = checkView(L, 2);
  const core::HeaderField* f = r.head->find(name);
  if (f == nullptr) {
    lua_pushnil(L);
  } else {
    lua_pushlstring(L, f->value.data(), f->value.size());
  }
  return 1;
}

int headHeaders(lua_State* L) {
  HeadRef r = headRef(L);
  pushHeaderTable(L, *r.head);
  return 1;
}

// Checks (name, value) at 2, 3 for set_header/add_header.
int checkField(lua_State* L, const HeadRef& r, const char* method, std::string_view& name,
               std::string_view& value) {
  if (checkEditable(L, r, method) == kRaise) return kRaise;
  const char* which = r.request ? "req" : "resp";
  name = checkView(L, 2);
  value = checkView(L, 3);
  if (!isHeaderName(name)) {
    return raiseFormat(L, "txn.%s:%s: invalid header name \"%s\"", which, method,
                       std::string(name).c_str());
  }
  if (!isHeaderValue(value)) {
    return raiseFormat(L, "txn.%s:%s: invalid value for \"%s\" (contains CR, LF or NUL)", which,
                       method, std::string(name).c_str());
  }
  return 0;
}

int headSetHeader(lua_State* L) {
  HeadRef r = headRef(L);
  std::string_view name, value;
  if (checkField(L, r, "set_header", name, value) == kRaise) return kRaise;
  r.head->set(name, value);
  return 0;
}

int headAddHeader(lua_State* L) {
  HeadRef r = headRef(L);
  std::string_view name, value;
  if (checkField(L, r, "add_header", name, value) == kRaise) return kRaise;
  r.head->add(name, value);
  return 0;
}

int headDelHeader(lua_State* L) {
  HeadRef r = headRef(L);
  std::string_view name = checkView(L, 2);
  if (checkEditable(L, r, "del_header") == kRaise) return kRaise;
  lua_pushinteger(L, static_cast<lua_Integer>(r.head->remove(name)));
  return 1;
}

// Replaces the path of the target, keeping what follows it ("?query") and, for an
// absolute-form target, what precedes it ("http://host").
int reqSetPath(lua_State* L) {
  HeadRef r = headRef(L);
  std::string_view path = checkView(L, 2);
  if (checkEditable(L, r, "set_path") == kRaise) return kRaise;
  if (path.empty() || path[0] != '/') {
    return raiseFormat(L, "txn.req:set_path: the path must start with \"/\"");
  }
  for (char c : path) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '?' || c == '#') {
      return raiseFormat(L, "txn.req:set_path: invalid character in path (space, control, ? or #)");
    }
  }
  core::HttpHead& req = *r.head;
  std::string_view target = req.target;
  size_t start = 0;
  if (target.empty() || target[0] != '/') {
    size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) {
      return raiseFormat(L, "txn.req:set_path: the request target \"%s\" has no path",
                         std::string(target).c_str());
    }
    start = target.find_first_of("/?", scheme + 3);
    if (start == std::string_view::npos) start = target.size();
  }
  size_t end = target.find('?', start);
  if (end == std::string_view::npos) end = target.size();
  std::string updated;
  updated.reserve(target.size() + path.size());
  updated.append(target.substr(0, start)).append(path).append(target.substr(end));
  req.target = req.own(updated);
  return 0;
}

// txn.resp:set_status(code [, reason]).
int respSetStatus(lua_State* L) {
  HeadRef r = headRef(L);
  lua_Number code = luaL_checknumber(L, 2);
  std::string_view reason = lua_isnoneornil(L, 3) ? std::string_view() : checkView(L, 3);
  if (checkEditable(L, r, "set_status") == kRaise) return kRaise;
  if (code != static_cast<int>(code) || code < 100 || code > 599) {
    return raiseFormat(L, "txn.resp:set_status: invalid status %f (expected 100..599)", code);
  }
  if (!isHeaderValue(reason)) {
    return raiseFormat(L, "txn.resp:set_status: invalid reason (contains CR, LF or NUL)");
  }
  r.head->status = static_cast<int>(code);
  r.head->reason = reason.empty() ? std::string_view() : r.head->own(reason);
  return 0;
}

int headIndex(lua_State* L) {
  HeadRef r = headRef(L);
  std::string_view key;
  if (indexMethodOrKey(L, key)) return 1;
  if (key.empty()) return 0;
  const core::HttpHead& h = *r.head;
  if (key == "version") {
    pushVersion(L, h);
    return 1;
  }
  std::string_view v;
  if (r.request) {
    if (key == "method") {
      v = h.method;
    } else if (key == "path") {
      v = h.path();
    } else if (key == "query") {
      v = h.query();
    } else if (key == "target") {
      v = h.target;
    } else {
      return 0;
    }
  } else if (key == "status") {
    lua_pushinteger(L, h.status);
    return 1;
  } else if (key == "reason") {
    v = h.reason;
  } else {
    return 0;
  }
  lua_pushlstring(L, v.data(), v.size());
  return 1;
}

int reqReadOnly(lua_State* L) {
  return raiseFormat(L, "txn.req is read-only (use its methods)");
}

int respReadOnly(lua_State* L) {
  return raiseFormat(L, "txn.resp is read-only (use its methods)");
}

}  // namespace

void registerHeads(lua_State* L) {
  static const luaL_Reg kReqMethods[] = {
      {"header", &guarded<headHeader>},
      {"headers", &guarded<headHeaders>},
      {"set_header", &guarded<headSetHeader>},
      {"add_header", &guarded<headAddHeader>},
      {"del_header", &guarded<headDelHeader>},
      {"set_path", &guarded<reqSetPath>},
      {nullptr, nullptr},
  };
  static const luaL_Reg kRespMethods[] = {
      {"header", &guarded<headHeader>},
      {"headers", &guarded<headHeaders>},
      {"set_header", &guarded<headSetHeader>},
      {"add_header", &guarded<headAddHeader>},
      {"del_header", &guarded<headDelHeader>},
      {"set_status", &guarded<respSetStatus>},
      {nullptr, nullptr},
  };
  newHandleMeta(L, kReqMeta, "txn.req", kReqMethods, &guarded<headIndex>, &guarded<reqReadOnly>);
  newHandleMeta(L, kRespMeta, "txn.resp", kRespMethods, &guarded<headIndex>,
                &guarded<respReadOnly>);
}

}  // namespace crescent::lua
