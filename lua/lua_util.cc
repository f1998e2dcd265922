#include "lua/lua_util.h"

#include <cstdarg>
#include <memory>

namespace crescent::lua {

std::string describeError(lua_State* L, int idx) {
  idx = absIndex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
    size_t len = 0;
    const char* s = lua_tolstring(L, idx, &len);
    return std::string(s, len);
  }
  if (luaL_callmeta(L, idx, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
    size_t len = 0;
    const char* s = lua_tolstring(L, -1, &len);
    std::string out(s, len);
    lua_pop(L, 1);
    return out;
  }
  return std::string("(error object is a ") + luaL_typename(L, idx) + " value)";
}

std::string fixLocation(std::string msg, const std::string& path) {
  // LuaJIT (lj_debug_shortname) shows "@path" as "..." + its last LUA_IDSIZE-4 bytes
  // when the path has LUA_IDSIZE bytes or more.
  constexpr size_t kKeep = LUA_IDSIZE - 4;
  if (path.size() < LUA_IDSIZE || msg.compare(0, 3, "...") != 0) return msg;
  std::string_view tail = std::string_view(path).substr(path.size() - kKeep);
  if (msg.size() < 3 + kKeep || std::string_view(msg).substr(3, kKeep) != tail) return msg;
  return path + msg.substr(3 + kKeep);
}

std::string scriptPath(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, kScriptPathKey);
  std::string path = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  lua_pop(L, 1);
  return path;
}

static int messageBody(lua_State* L, bool traceback) {
  std::string msg = fixLocation(describeError(L, 1), scriptPath(L));
  if (traceback) {
    luaL_traceback(L, L, msg.c_str(), 1);
  } else {
    lua_pushlstring(L, msg.data(), msg.size());
  }
  return 1;
}

static int messageImpl(lua_State* L) {
  return messageBody(L, false);
}
static int tracebackImpl(lua_State* L) {
  return messageBody(L, true);
}

int messageHandler(lua_State* L) {
  return guarded<messageImpl>(L);
}
int tracebackHandler(lua_State* L) {
  return guarded<tracebackImpl>(L);
}

void setMainThread(lua_State* L) {
  lua_pushthread(L);
  lua_setfield(L, LUA_REGISTRYINDEX, kMainThreadKey);
}

core::Bytes bodyBytes(lua_State* L, int idx) {
  // Below this a copy is cheaper than a registry slot, and the body joins the head's
  // write anyway (Http1Connection's kCoalesceBody).
  constexpr size_t kPinAtLeast = 64 * 1024;
  size_t n = 0;
  const char* p = lua_tolstring(L, idx, &n);
  if (p == nullptr) return {};
  if (n <= kPinAtLeast) return core::Bytes(std::string(p, n));
  lua_getfield(L, LUA_REGISTRYINDEX, kMainThreadKey);
  lua_State* main = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (main == nullptr) return core::Bytes(std::string(p, n));
  lua_pushvalue(L, idx);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  class Pin {
   public:
    Pin(lua_State* main, int ref) : main_(main), ref_(ref) {}
    ~Pin() { luaL_unref(main_, LUA_REGISTRYINDEX, ref_); }
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;

   private:
    lua_State* main_;
    int ref_;
  };
  return core::Bytes::borrow(p, n, std::make_shared<Pin>(main, ref));
}

void setScriptPath(lua_State* L, const std::string& path) {
  lua_pushlstring(L, path.data(), path.size());
  lua_setfield(L, LUA_REGISTRYINDEX, kScriptPathKey);
}

std::optional<std::string> stringField(lua_State* L, int idx, const char* key) {
  lua_getfield(L, idx, key);
  std::optional<std::string> out;
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len = 0;
    const char* s = lua_tolstring(L, -1, &len);
    out.emplace(s, len);
  }
  lua_pop(L, 1);
  return out;
}

std::optional<int64_t> intField(lua_State* L, int idx, const char* key) {
  lua_getfield(L, idx, key);
  std::optional<int64_t> out;
  if (lua_type(L, -1) == LUA_TNUMBER) out = static_cast<int64_t>(lua_tonumber(L, -1));
  lua_pop(L, 1);
  return out;
}

std::optional<bool> boolField(lua_State* L, int idx, const char* key) {
  lua_getfield(L, idx, key);
  std::optional<bool> out;
  if (lua_type(L, -1) == LUA_TBOOLEAN) out = lua_toboolean(L, -1) != 0;
  lua_pop(L, 1);
  return out;
}

int raiseFormat(lua_State* L, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return kRaise;
}

std::string_view checkView(lua_State* L, int idx) {
  size_t len = 0;
  const char* s = luaL_checklstring(L, idx, &len);
  return {s, len};
}

void pushRegistryTable(lua_State* L, const char* key) {
  lua_getfield(L, LUA_REGISTRYINDEX, key);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, key);
}

void pushMetatable(lua_State* L, const char* tname) {
  lua_pushlightuserdata(L, const_cast<char*>(tname));
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  luaL_getmetatable(L, tname);
  if (lua_isnil(L, -1)) return;  // not registered (yet): nothing to cache
  lua_pushlightuserdata(L, const_cast<char*>(tname));
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

void* testUdata(lua_State* L, int idx, const char* tname) {
  void* p = lua_touserdata(L, idx);
  if (p == nullptr || lua_islightuserdata(L, idx) || !lua_getmetatable(L, idx)) return nullptr;
  pushMetatable(L, tname);
  bool same = lua_rawequal(L, -1, -2) != 0;
  lua_pop(L, 2);
  return same ? p : nullptr;
}

bool indexMethodOrKey(lua_State* L, std::string_view& key) {
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (!lua_isnil(L, -1)) return true;
  lua_pop(L, 1);
  key = {};
  if (lua_type(L, 2) != LUA_TSTRING) return false;
  size_t len = 0;
  const char* k = lua_tolstring(L, 2, &len);
  key = std::string_view(k, len);
  return false;
}

}  // namespace crescent::lua
