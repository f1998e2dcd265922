#include "lua/http_util.h"

#include <algorithm>
#include <cstring>

namespace crescent::lua {

bool isHeaderName(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    bool ok = (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
              (u != 0 && std::strchr("!#$%&'*+-.^_`|~", u) != nullptr);
    if (!ok) return false;
  }
  return true;
}

bool isHeaderValue(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 421:
      return "Misdirected Request";
    case 425:
      return "Too Early";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

void pushHeaderTable(lua_State* L, const core::HttpHead& head) {
  lua_createtable(L, 0, static_cast<int>(head.headers.size()));
  int t = lua_gettop(L);
  for (const core::HeaderField& h : head.headers) {
    std::string name = lowercase(h.name);
    lua_pushlstring(L, name.data(), name.size());
    lua_rawget(L, t);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_createtable(L, 1, 0);
      lua_pushlstring(L, name.data(), name.size());
      lua_pushvalue(L, -2);
      lua_rawset(L, t);
    }
    lua_pushlstring(L, h.value.data(), h.value.size());
    lua_rawseti(L, -2, static_cast<int>(lua_objlen(L, -2) + 1));
    lua_pop(L, 1);
  }
}

void pushVersion(lua_State* L, const core::HttpHead& head) {
  lua_pushstring(L, head.version_minor == 0 ? "1.0" : "1.1");
}

bool readHeaderTable(lua_State* L, int idx, std::vector<std::pair<std::string, std::string>>& out,
                     std::string& error) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      error = "header names must be strings";
      return false;
    }
    size_t nlen = 0;
    const char* n = lua_tolstring(L, -2, &nlen);
    std::string name(n, nlen);
    if (!isHeaderName(name)) {
      lua_pop(L, 2);
      error = "invalid header name \"" + name + "\"";
      return false;
    }
    int count = lua_istable(L, -1) ? static_cast<int>(lua_objlen(L, -1)) : 1;
    for (int i = 1; i <= count; ++i) {
      if (lua_istable(L, -1))
        lua_rawgeti(L, -1, i);
      else
        lua_pushvalue(L, -1);
      size_t vlen = 0;
      const char* v = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                          ? lua_tolstring(L, -1, &vlen)
                          : nullptr;
      if (v == nullptr || !isHeaderValue(std::string_view(v, vlen))) {
        lua_pop(L, 3);
        error = "invalid value for header \"" + name + "\"";
        return false;
      }
      out.emplace_back(name, std::string(v, vlen));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  return true;
}

}  // namespace crescent::lua
