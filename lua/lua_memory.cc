#include "lua/lua_memory.h"

#include <lua.hpp>

#include <cstdlib>

namespace crescent::lua {

void* LuaMemory::alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* m = static_cast<LuaMemory*>(ud);
  // Lua 5.1's contract: osize is the block's size when ptr != NULL, else meaningless.
  size_t old = ptr != nullptr ? osize : 0;
  if (nsize == 0) {
    std::free(ptr);
    m->used -= old;
    return nullptr;
  }
  if (m->limit != 0 && m->enforce > 0 && nsize > old && m->used - old + nsize > m->limit) {
    ++m->limit_hits;
    m->refused = true;
    m->collect = true;
    return nullptr;  // LuaJIT raises LUA_ERRMEM "not enough memory" (lj_err_mem)
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) return nullptr;  // a shrink never fails in practice; growth did not happen
  m->used = m->used - old + nsize;
  return p;
}

LuaMemory* luaMemoryOf(lua_State* L) {
  void* ud = nullptr;
  lua_Alloc f = lua_getallocf(L, &ud);
  return f == &LuaMemory::alloc ? static_cast<LuaMemory*>(ud) : nullptr;
}

std::string explainMemoryError(lua_State* L, std::string msg) {
  LuaMemory* m = luaMemoryOf(L);
  if (m == nullptr || !m->refused) return msg;
  m->refused = false;
  if (msg.find("not enough memory") == std::string::npos) return msg;
  return "Lua memory limit reached (global.lua.maxmem = " + std::to_string(m->limit / 1024) +
         " KB): " + msg;
}

}  // namespace crescent::lua
