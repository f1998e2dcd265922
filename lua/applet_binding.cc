// The `applet` object given to Lua services (docs/lua-api.md), after HAProxy's
// AppletHTTP: request fields (method, path, qs, version, headers, src, src_port), the
// body through applet:receive(), and the response through set_status/add_header/
// start_response/send.

#include <cstdarg>
#include <string>

#include "lua/call_context.h"
#include "lua/http_util.h"
#include "lua/lua_util.h"

namespace crescent::lua {

namespace {

ActiveCall& appletCall(lua_State* L) {
  return checkCall(L, 1, kAppletMeta, "applet", "service");
}

int checkNotStarted(lua_State* L, const ServiceCall& svc, const char* method) {
  if (svc.started) {
    return raiseFormat(L,
                       "applet:%s: the response has already started (call it before "
                       "start_response and send)",
                       method);
  }
  return 0;
}

// applet:receive([n]): up to n bytes (default: all) of the request body not yet read;
// "" once it has all been read.
int appletReceive(lua_State* L) {
  ActiveCall& call = appletCall(L);
  ServiceCall& svc = *call.service;
  size_t left = svc.body.size() - svc.read;
  size_t n = left;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number want = luaL_checknumber(L, 2);
    if (want < 0) return raiseFormat(L, "applet:receive: negative size");
    if (want < static_cast<lua_Number>(left)) n = static_cast<size_t>(want);
  }
  lua_pushlstring(L, svc.body.data() + svc.read, n);
  svc.read += n;
  return 1;
}

int appletSetStatus(lua_State* L) {
  ActiveCall& call = appletCall(L);
  lua_Number code = luaL_checknumber(L, 2);
  std::string_view reason = lua_isnoneornil(L, 3) ? std::string_view() : checkView(L, 3);
  if (checkNotStarted(L, *call.service, "set_status") == kRaise) return kRaise;
  if (code != static_cast<int>(code) || code < 100 || code > 599) {
    return raiseFormat(L, "applet:set_status: invalid status %f (expected 100..599)", code);
  }
  if (!isHeaderValue(reason)) {
    return raiseFormat(L, "applet:set_status: invalid reason (contains CR, LF or NUL)");
  }
  core::ServiceResponse& r = *call.service->response;
  r.status = static_cast<int>(code);
  r.reason = std::string(reason);
  return 0;
}

int appletAddHeader(lua_State* L) {
  ActiveCall& call = appletCall(L);
  std::string_view name = checkView(L, 2);
  std::string_view value = checkView(L, 3);
  if (checkNotStarted(L, *call.service, "add_header") == kRaise) return kRaise;
  if (!isHeaderName(name)) {
    return raiseFormat(L, "applet:add_header: invalid header name \"%s\"",
                       std::string(name).c_str());
  }
  if (!isHeaderValue(value)) {
    return raiseFormat(L, "applet:add_header: invalid value for \"%s\" (contains CR, LF or NUL)",
                       std::string(name).c_str());
  }
  call.service->response->headers.emplace_back(std::string(name), std::string(value));
  return 0;
}

int appletStartResponse(lua_State* L) {
  ActiveCall& call = appletCall(L);
  call.service->started = true;
  return 0;
}

int appletSend(lua_State* L) {
  ActiveCall& call = appletCall(L);
  std::string_view data = checkView(L, 2);
  call.service->started = true;
  core::Bytes& body = call.service->response->body;
  // A response sent in one piece is sent from the Lua string itself (no copy).
  if (body.empty()) {
    body = bodyBytes(L, 2);
  } else {
    body.append(data);
  }
  return 0;
}

int appletIndex(lua_State* L) {
  ActiveCall& call = appletCall(L);
  std::string_view key;
  if (indexMethodOrKey(L, key)) return 1;
  if (key.empty()) return 0;
  const core::RequestContext& ctx = *call.ctx;
  std::string_view v;
  if (key == "method") {
    v = ctx.req.method;
  } else if (key == "path") {
    v = ctx.req.path();
  } else if (key == "qs") {
    v = ctx.req.query();
  } else if (key == "target") {
    v = ctx.req.target;
  } else if (key == "version") {
    pushVersion(L, ctx.req);
    return 1;
  } else if (key == "headers") {
    // Built once per call and cached in the handle's environment table.
    lua_getfenv(L, 1);
    lua_getfield(L, -1, "headers");
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      pushHeaderTable(L, ctx.req);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, "headers");
    }
    return 1;
  } else if (key == "src") {
    std::string ip = ctx.src.ip();
    lua_pushlstring(L, ip.data(), ip.size());
    return 1;
  } else if (key == "src_port") {
    lua_pushinteger(L, ctx.src.port());
    return 1;
  } else {
    return 0;
  }
  lua_pushlstring(L, v.data(), v.size());
  return 1;
}

int appletReadOnly(lua_State* L) {
  return raiseFormat(L, "applet is read-only (keep your data in local variables)");
}

}  // namespace

void registerApplet(lua_State* L) {
  static const luaL_Reg kMethods[] = {
      {"receive", &guarded<appletReceive>},
      {"set_status", &guarded<appletSetStatus>},
      {"add_header", &guarded<appletAddHeader>},
      {"start_response", &guarded<appletStartResponse>},
      {"send", &guarded<appletSend>},
      {nullptr, nullptr},
  };
  newHandleMeta(L, kAppletMeta, "applet", kMethods, &guarded<appletIndex>,
                &guarded<appletReadOnly>);
}

void pushApplet(lua_State* L, ActiveCall& call) {
  pushHandle(L, call, kAppletMeta, true);
  lua_newtable(L);
  lua_setfenv(L, -2);
}

}  // namespace crescent::lua
