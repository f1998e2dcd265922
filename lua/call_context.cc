#include "lua/call_context.h"

#include "lua/lua_util.h"

namespace crescent::lua {

ActiveCall& checkCall(lua_State* L, int idx, const char* tname, const char* what,
                      const char* when) {
  auto* h = static_cast<Handle*>(testUdata(L, idx, tname));
  if (h == nullptr) h = static_cast<Handle*>(luaL_checkudata(L, idx, tname));  // raises
  if (!h->call->active || (h->serial != 0 && h->call->serial != h->serial)) {
    luaL_error(L, "%s used outside its %s", what, when);
  }
  return *h->call;
}

void pushHandle(lua_State* L, ActiveCall& call, const char* tname, bool phase_only) {
  auto* h = static_cast<Handle*>(lua_newuserdata(L, sizeof(Handle)));
  h->call = &call;
  h->serial = phase_only ? call.serial : 0;
  pushMetatable(L, tname);
  lua_setmetatable(L, -2);
}

namespace {
int handleToString(lua_State* L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}
}  // namespace

void newHandleMeta(lua_State* L, const char* tname, const char* shown, const luaL_Reg* methods,
                   lua_CFunction index, lua_CFunction newindex) {
  if (luaL_newmetatable(L, tname) == 0) {
    lua_pop(L, 1);
    return;
  }
  lua_newtable(L);
  for (const luaL_Reg* m = methods; m->name != nullptr; ++m) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pushcclosure(L, index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushstring(L, shown);
  pushGuarded<handleToString>(L, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

}  // namespace crescent::lua
