// crescent.shared(name) and the dictionary object (lua/shared_dict_binding.h).

#include "lua/shared_dict_binding.h"

#include <cmath>
#include <cstdarg>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/shared_dict.h"
#include "lua/lua_util.h"

namespace crescent::lua {

namespace {

using DictPtr = std::shared_ptr<core::SharedDict>;
using core::SharedDictError;
using core::SharedValue;

constexpr const char* kDictCacheKey = "crescent.shared_dicts";
constexpr size_t kMaxNameBytes = 256;
constexpr lua_Number kDefaultMaxKeys = 1024;

// Pushes "file:line: " of the Lua caller and the formatted message, and returns kRaise
// (the trampoline raises it). A config error then names its line like the DSL's.
int raiseHere(lua_State* L, const char* fmt, ...) {
  luaL_where(L, 1);
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return kRaise;
}

core::SharedDict* toDict(lua_State* L, int idx) {
  void* p = lua_touserdata(L, idx);
  if (p == nullptr || !lua_getmetatable(L, idx)) return nullptr;
  luaL_getmetatable(L, kSharedDictMeta);
  bool same = lua_rawequal(L, -1, -2) != 0;
  lua_pop(L, 2);
  return same ? static_cast<DictPtr*>(p)->get() : nullptr;
}

// The checks below return 0, or kRaise after pushing the message (`fn` is "dict:set"...).

int checkSelf(lua_State* L, const char* fn, core::SharedDict*& out) {
  out = toDict(L, 1);
  if (out != nullptr) return 0;
  return raiseHere(L, "%s: call it as a method on a shared dict (dict:%s(...))", fn, fn + 5);
}

int checkKey(lua_State* L, int idx, const char* fn, std::string_view& out) {
  if (lua_type(L, idx) != LUA_TSTRING) {
    return raiseHere(L, "%s: key must be a string (got %s)", fn, luaL_typename(L, idx));
  }
  size_t len = 0;
  const char* k = lua_tolstring(L, idx, &len);
  out = std::string_view(k, len);
  return 0;
}

// nil is accepted (a deletion) only when `allow_nil`.
int checkValue(lua_State* L, int idx, const char* fn, bool allow_nil, SharedValue& out) {
  switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
      if (!allow_nil) break;
      out = std::monostate();
      return 0;
    case LUA_TBOOLEAN:
      out = lua_toboolean(L, idx) != 0;
      return 0;
    case LUA_TNUMBER:
      out = static_cast<double>(lua_tonumber(L, idx));
      return 0;
    case LUA_TSTRING: {
      size_t len = 0;
      const char* s = lua_tolstring(L, idx, &len);
      out = std::string(s, len);
      return 0;
    }
    default:
      break;
  }
  return raiseHere(L, "%s: value must be %sa boolean, a number or a string (got %s)", fn,
                   allow_nil ? "nil, " : "", luaL_typename(L, idx));
}

// An optional number argument (`what` names it); nil or absent gives `dflt`.
int checkNumber(lua_State* L, int idx, const char* fn, const char* what, double dflt, double& out) {
  if (lua_isnoneornil(L, idx)) {
    out = dflt;
    return 0;
  }
  if (lua_type(L, idx) != LUA_TNUMBER) {
    return raiseHere(L, "%s: %s must be a number (got %s)", fn, what, luaL_typename(L, idx));
  }
  out = static_cast<double>(lua_tonumber(L, idx));
  return 0;
}

int checkTtl(lua_State* L, int idx, const char* fn, double& out) {
  if (checkNumber(L, idx, fn, "ttl", 0, out) == kRaise) return kRaise;
  if (!(out >= 0) || std::isinf(out)) {
    return raiseHere(L, "%s: ttl must be a number of seconds >= 0, 0 for none (got %f)", fn,
                     static_cast<lua_Number>(out));
  }
  return 0;
}

// true, or nil and the reason.
int pushOutcome(lua_State* L, SharedDictError e) {
  if (e == SharedDictError::kOk) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, core::sharedDictErrorText(e));
  return 2;
}

void pushValue(lua_State* L, const SharedValue& v) {
  if (const auto* b = std::get_if<bool>(&v)) {
    lua_pushboolean(L, *b);
  } else if (const auto* d = std::get_if<double>(&v)) {
    lua_pushnumber(L, *d);
  } else if (const auto* s = std::get_if<std::string>(&v)) {
    lua_pushlstring(L, s->data(), s->size());
  } else {
    lua_pushnil(L);
  }
}

// dict:get(key) -> value or nil (nil, "empty key" for "")
int dictGet(lua_State* L) {
  core::SharedDict* d = nullptr;
  std::string_view key;
  if (checkSelf(L, "dict:get", d) == kRaise || checkKey(L, 2, "dict:get", key) == kRaise) {
    return kRaise;
  }
  if (key.empty()) return pushOutcome(L, SharedDictError::kEmptyKey);
  pushValue(L, d->get(key));
  return 1;
}

using Writer = SharedDictError (core::SharedDict::*)(std::string_view, SharedValue, double);

// dict:set/add/replace(key, value [, ttl]) -> true or nil, err
int write(lua_State* L, const char* fn, Writer op, bool allow_nil) {
  core::SharedDict* d = nullptr;
  std::string_view key;
  SharedValue value;
  double ttl = 0;
  if (checkSelf(L, fn, d) == kRaise || checkKey(L, 2, fn, key) == kRaise ||
      checkValue(L, 3, fn, allow_nil, value) == kRaise || checkTtl(L, 4, fn, ttl) == kRaise) {
    return kRaise;
  }
  return pushOutcome(L, (d->*op)(key, std::move(value), ttl));
}

int dictSet(lua_State* L) {
  return write(L, "dict:set", &core::SharedDict::set, true);
}
int dictAdd(lua_State* L) {
  return write(L, "dict:add", &core::SharedDict::add, false);
}
int dictReplace(lua_State* L) {
  return write(L, "dict:replace", &core::SharedDict::replace, false);
}

// dict:incr(key, n [, init [, init_ttl]]) -> new value or nil, err
int dictIncr(lua_State* L) {
  constexpr const char* fn = "dict:incr";
  core::SharedDict* d = nullptr;
  std::string_view key;
  double delta = 0;
  double init = 0;
  double init_ttl = 0;
  if (checkSelf(L, fn, d) == kRaise || checkKey(L, 2, fn, key) == kRaise) return kRaise;
  if (lua_type(L, 3) != LUA_TNUMBER) {
    return raiseHere(L, "%s: increment must be a number (got %s)", fn, luaL_typename(L, 3));
  }
  delta = static_cast<double>(lua_tonumber(L, 3));
  bool has_init = !lua_isnoneornil(L, 4);
  if (checkNumber(L, 4, fn, "init", 0, init) == kRaise || checkTtl(L, 5, fn, init_ttl) == kRaise) {
    return kRaise;
  }
  double out = 0;
  SharedDictError e =
      d->incr(key, delta, out, has_init ? std::optional<double>(init) : std::nullopt, init_ttl);
  if (e != SharedDictError::kOk) return pushOutcome(L, e);
  lua_pushnumber(L, out);
  return 1;
}

// dict:delete(key)
int dictDelete(lua_State* L) {
  core::SharedDict* d = nullptr;
  std::string_view key;
  if (checkSelf(L, "dict:delete", d) == kRaise || checkKey(L, 2, "dict:delete", key) == kRaise) {
    return kRaise;
  }
  d->remove(key);
  return 0;
}

// dict:get_keys([max]) -> array of keys; max 0 = all, default 1024
int dictGetKeys(lua_State* L) {
  constexpr const char* fn = "dict:get_keys";
  core::SharedDict* d = nullptr;
  double max = 0;
  if (checkSelf(L, fn, d) == kRaise ||
      checkNumber(L, 2, fn, "max", kDefaultMaxKeys, max) == kRaise) {
    return kRaise;
  }
  if (!(max >= 0) || max != std::floor(max) || max > 1e15) {
    return raiseHere(L, "%s: max must be an integer >= 0, 0 for all (got %f)", fn,
                     static_cast<lua_Number>(max));
  }
  std::vector<std::string> keys = d->keys(static_cast<size_t>(max));
  lua_createtable(L, static_cast<int>(keys.size()), 0);
  for (size_t i = 0; i < keys.size(); ++i) {
    lua_pushlstring(L, keys[i].data(), keys[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 1;
}

// dict:flush_all()
int dictFlushAll(lua_State* L) {
  core::SharedDict* d = nullptr;
  if (checkSelf(L, "dict:flush_all", d) == kRaise) return kRaise;
  d->flushAll();
  return 0;
}

int dictIndex(lua_State* L) {
  std::string_view key;
  if (indexMethodOrKey(L, key)) return 1;
  if (key == "name") {
    // __index runs only for values with this metatable (hidden from scripts).
    const std::string& name = (*static_cast<DictPtr*>(lua_touserdata(L, 1)))->name();
    lua_pushlstring(L, name.data(), name.size());
    return 1;
  }
  return 0;
}

int dictNewIndex(lua_State* L) {
  return raiseHere(L, "shared dict objects are read-only (use dict:set(key, value))");
}

int dictToString(lua_State* L) {
  core::SharedDict* d = toDict(L, 1);
  std::string t = "shared dict \"" + (d != nullptr ? d->name() : std::string("?")) + "\"";
  lua_pushlstring(L, t.data(), t.size());
  return 1;
}

int dictGc(lua_State* L) {
  static_cast<DictPtr*>(lua_touserdata(L, 1))->~DictPtr();
  return 0;
}

// crescent.shared(name) -> dict; the same object for the same name within a state.
int libShared(lua_State* L) {
  if (lua_type(L, 1) != LUA_TSTRING || lua_objlen(L, 1) == 0) {
    return raiseHere(L, "crescent.shared: name must be a non-empty string (got %s)",
                     lua_type(L, 1) == LUA_TSTRING ? "\"\"" : luaL_typename(L, 1));
  }
  size_t len = 0;
  const char* name = lua_tolstring(L, 1, &len);
  if (len > kMaxNameBytes) {
    return raiseHere(L, "crescent.shared: name too long (%d bytes, at most %d)",
                     static_cast<int>(len), static_cast<int>(kMaxNameBytes));
  }
  pushRegistryTable(L, kDictCacheKey);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  void* mem = lua_newuserdata(L, sizeof(DictPtr));
  new (mem) DictPtr(core::SharedDicts::get(std::string_view(name, len)));
  luaL_getmetatable(L, kSharedDictMeta);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  return 1;
}

}  // namespace

void pushSharedDictFunction(lua_State* L) {
  static const luaL_Reg kMethods[] = {
      {"get", &guarded<dictGet>},
      {"set", &guarded<dictSet>},
      {"add", &guarded<dictAdd>},
      {"replace", &guarded<dictReplace>},
      {"incr", &guarded<dictIncr>},
      {"delete", &guarded<dictDelete>},
      {"get_keys", &guarded<dictGetKeys>},
      {"flush_all", &guarded<dictFlushAll>},
      {nullptr, nullptr},
  };
  if (luaL_newmetatable(L, kSharedDictMeta) != 0) {
    lua_newtable(L);
    for (const luaL_Reg* m = kMethods; m->name != nullptr; ++m) {
      lua_pushcfunction(L, m->func);
      lua_setfield(L, -2, m->name);
    }
    lua_pushcclosure(L, &guarded<dictIndex>, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, &guarded<dictNewIndex>);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, &guarded<dictToString>);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, &guarded<dictGc>);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  pushGuarded<libShared>(L);
}

}  // namespace crescent::lua
