// Server and backend objects, and the `crescent` library table (lua/server_binding.h).

#include "lua/server_binding.h"

#include <cstdarg>
#include <string>
#include <string_view>

#include "core/backend/balancer.h"
#include "core/backend/server.h"
#include "core/session/generation.h"
#include "lua/call_context.h"
#include "lua/lua_util.h"
#include "lua/shared_dict_binding.h"

namespace crescent::lua {

namespace {

constexpr const char* kServerCacheKey = "crescent.server_objects";
constexpr const char* kBackendCacheKey = "crescent.backend_objects";
constexpr const char* kGenerationKey = "crescent.generation";

core::Server& checkServer(lua_State* L, int idx) {
  auto** p = static_cast<core::Server**>(luaL_checkudata(L, idx, kServerMeta));
  return **p;
}

// server:set_state("ready" | "drain" | "maint")
int serverSetState(lua_State* L) {
  core::Server& s = checkServer(L, 1);
  std::string_view st = checkView(L, 2);
  core::AdminState a;
  if (st == "ready") {
    a = core::AdminState::kReady;
  } else if (st == "drain") {
    a = core::AdminState::kDrain;
  } else if (st == "maint") {
    a = core::AdminState::kMaint;
  } else {
    return raiseFormat(L,
                       "server:set_state: expected \"ready\", \"drain\" or \"maint\" (got \"%s\")",
                       std::string(st).c_str());
  }
  s.setAdmin(a, "Lua");
  return 0;
}

int checkInt(lua_State* L, int idx, const char* what, int lo, int hi, int& out) {
  lua_Number n = luaL_checknumber(L, idx);
  if (n != static_cast<lua_Number>(static_cast<int64_t>(n)) || n < lo || n > hi) {
    return raiseFormat(L, "%s: expected an integer between %d and %d (got %f)", what, lo, hi, n);
  }
  out = static_cast<int>(n);
  return 0;
}

// server:set_weight(0..256)
int serverSetWeight(lua_State* L) {
  core::Server& s = checkServer(L, 1);
  int w = 0;
  if (checkInt(L, 2, "server:set_weight", 0, 256, w) == kRaise) return kRaise;
  s.setWeight(w);
  return 0;
}

// server:set_maxconn(n), 0 = unlimited
int serverSetMaxconn(lua_State* L) {
  core::Server& s = checkServer(L, 1);
  int n = 0;
  if (checkInt(L, 2, "server:set_maxconn", 0, 1 << 30, n) == kRaise) return kRaise;
  s.setMaxconn(n);
  return 0;
}

int serverIndex(lua_State* L) {
  // __index runs only for values with this metatable (hidden from scripts): arg 1 is a
  // server object, no need for luaL_checkudata's registry lookup on this hot path.
  core::Server& s = **static_cast<core::Server**>(lua_touserdata(L, 1));
  std::string_view key;
  if (indexMethodOrKey(L, key)) return 1;
  if (key.empty()) return 0;
  switch (key[0]) {
    case 'a':
      if (key == "address") {  // as configured, or as `set server addr` changed it
        std::string text = s.addressChanged() ? s.address().toString() : s.config().text;
        lua_pushlstring(L, text.data(), text.size());
        return 1;
      }
      break;
    case 'b':
      if (key == "backend") {
        lua_pushlstring(L, s.backend().name().data(), s.backend().name().size());
        return 1;
      }
      if (key == "backup") {
        lua_pushboolean(L, s.backup());
        return 1;
      }
      break;
    case 'c':
      if (key == "current") {
        lua_pushinteger(L, s.current());
        return 1;
      }
      break;
    case 'i':
      if (key == "id") {
        lua_pushinteger(L, s.config().id);
        return 1;
      }
      break;
    case 'm':
      if (key == "maxconn") {
        lua_pushinteger(L, s.maxconn());
        return 1;
      }
      break;
    case 'n':
      if (key == "name") {
        lua_pushlstring(L, s.name().data(), s.name().size());
        return 1;
      }
      break;
    case 'q':
      if (key == "queue") {
        lua_pushinteger(L, s.queued());
        return 1;
      }
      break;
    case 'r':
      if (key == "response_time") {
        lua_pushnumber(L, s.responseTimeMs());
        return 1;
      }
      break;
    case 's':
      if (key == "state") {
        lua_pushstring(L, s.stateName());
        return 1;
      }
      break;
    case 't':
      if (key == "total") {
        lua_pushnumber(L, static_cast<lua_Number>(s.total()));
        return 1;
      }
      break;
    case 'w':
      if (key == "weight") {
        lua_pushinteger(L, s.weight());
        return 1;
      }
      break;
  }
  return 0;
}

int serverReadOnly(lua_State* L) {
  return raiseFormat(L, "server objects are read-only (use set_state, set_weight, set_maxconn)");
}

int serverToString(lua_State* L) {
  core::Server& s = checkServer(L, 1);
  std::string t = "server " + s.backend().name() + "/" + s.name();
  lua_pushlstring(L, t.data(), t.size());
  return 1;
}

// crescent.hash(string) -> integer in [0, 2^53): the hash the built-in algorithms use.
int libHash(lua_State* L) {
  std::string_view k = checkView(L, 1);
  lua_pushnumber(L, static_cast<lua_Number>(core::hashKey(k) >> 11));
  return 1;
}

int libNowMs(lua_State* L) {
  lua_pushnumber(L, static_cast<lua_Number>(core::monotonicMs()));
  return 1;
}

core::Generation* generationOf(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, kGenerationKey);
  auto* g = static_cast<core::Generation*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return g;
}

// crescent.server("backend/server") -> server object or nil
int libServer(lua_State* L) {
  std::string_view path = checkView(L, 1);
  core::Generation* g = generationOf(L);
  if (g == nullptr) {
    return raiseFormat(L,
                       "crescent.server: servers exist once the configuration is loaded (call it "
                       "from a hook)");
  }
  size_t slash = path.find('/');
  if (slash == std::string_view::npos) {
    return raiseFormat(L, "crescent.server: expected \"backend/server\" (got \"%s\")",
                       std::string(path).c_str());
  }
  int bi = g->config().findBackend(path.substr(0, slash));
  core::Server* s = bi < 0 ? nullptr : g->backend(bi).findServer(path.substr(slash + 1));
  if (s == nullptr) {
    lua_pushnil(L);
  } else {
    pushServer(L, *s);
  }
  return 1;
}

// crescent.backend("name") -> { name, servers } or nil
int libBackend(lua_State* L) {
  std::string_view name = checkView(L, 1);
  core::Generation* g = generationOf(L);
  if (g == nullptr) {
    return raiseFormat(L,
                       "crescent.backend: backends exist once the configuration is loaded (call "
                       "it from a hook)");
  }
  int bi = g->config().findBackend(name);
  if (bi < 0) {
    lua_pushnil(L);
  } else {
    pushBackend(L, g->backend(bi));
  }
  return 1;
}

}  // namespace

void registerCrescentLib(lua_State* L) {
  static const luaL_Reg kServerMethods[] = {
      {"set_state", &guarded<serverSetState>},
      {"set_weight", &guarded<serverSetWeight>},
      {"set_maxconn", &guarded<serverSetMaxconn>},
      {nullptr, nullptr},
  };
  if (luaL_newmetatable(L, kServerMeta) != 0) {
    lua_newtable(L);
    for (const luaL_Reg* m = kServerMethods; m->name != nullptr; ++m) {
      lua_pushcfunction(L, m->func);
      lua_setfield(L, -2, m->name);
    }
    lua_pushcclosure(L, &guarded<serverIndex>, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, &guarded<serverReadOnly>);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, &guarded<serverToString>);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);

  lua_createtable(L, 0, 5);
  pushGuarded<libHash>(L);
  lua_setfield(L, -2, "hash");
  pushGuarded<libNowMs>(L);
  lua_setfield(L, -2, "now_ms");
  pushGuarded<libServer>(L);
  lua_setfield(L, -2, "server");
  pushGuarded<libBackend>(L);
  lua_setfield(L, -2, "backend");
  pushSharedDictFunction(L);
  lua_setfield(L, -2, "shared");
  lua_setglobal(L, "crescent");
}

void attachGeneration(lua_State* L, core::Generation& gen) {
  lua_pushlightuserdata(L, &gen);
  lua_setfield(L, LUA_REGISTRYINDEX, kGenerationKey);
}

void pushServer(lua_State* L, core::Server& server) {
  pushRegistryTable(L, kServerCacheKey);
  lua_pushlightuserdata(L, &server);
  lua_rawget(L, -2);
  if (!lua_isnil(L, -1)) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  auto** p = static_cast<core::Server**>(lua_newuserdata(L, sizeof(core::Server*)));
  *p = &server;
  luaL_getmetatable(L, kServerMeta);
  lua_setmetatable(L, -2);
  lua_pushlightuserdata(L, &server);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

core::Server* toServer(lua_State* L, int idx) {
  void* p = lua_touserdata(L, idx);
  if (p == nullptr || !lua_getmetatable(L, idx)) return nullptr;
  luaL_getmetatable(L, kServerMeta);
  bool same = lua_rawequal(L, -1, -2) != 0;
  lua_pop(L, 2);
  return same ? *static_cast<core::Server**>(p) : nullptr;
}

void pushBackend(lua_State* L, core::Backend& backend) {
  pushRegistryTable(L, kBackendCacheKey);
  lua_pushlightuserdata(L, &backend);
  lua_rawget(L, -2);
  if (!lua_isnil(L, -1)) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, backend.name().data(), backend.name().size());
  lua_setfield(L, -2, "name");
  auto& servers = backend.servers();
  lua_createtable(L, static_cast<int>(servers.size()), 0);
  for (size_t i = 0; i < servers.size(); ++i) {
    pushServer(L, *servers[i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_setfield(L, -2, "servers");
  lua_pushlightuserdata(L, &backend);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

}  // namespace crescent::lua
