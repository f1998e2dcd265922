#include "lua/script_state.h"

#include <malloc.h>
#include <lua.hpp>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/base/log.h"
#include "lua/config_builder.h"
#include "lua/lua_memory.h"
#include "lua/lua_util.h"
#include "lua/run_budget.h"
#include "lua/server_binding.h"
#include "lua/socket_binding.h"
#include "lua/stdlib_registry.h"
#include "lua/timers.h"

namespace crescent::lua {

using core::Result;
using core::Status;

namespace {

// package.preload loader for embedded module number upvalue(1): loads the bytecode and
// runs it with the module name as argument, like Lua's own loaders.
int stdlibLoader(lua_State* L) {
  int i = static_cast<int>(lua_tointeger(L, lua_upvalueindex(1)));
  const StdlibModule& m = kStdlibModules[i];
  std::string chunk = std::string("=") + m.name;
  if (luaL_loadbuffer(L, m.bytecode, m.size, chunk.c_str()) != 0) return kRaise;
  lua_pushstring(L, m.name);
  lua_call(L, 1, 1);
  return 1;
}

void installStdlib(lua_State* L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (int i = 0; kStdlibModules[i].name != nullptr; ++i) {
    lua_pushinteger(L, i);
    pushGuarded<stdlibLoader>(L, 1);
    lua_setfield(L, -2, kStdlibModules[i].name);
  }
  lua_pop(L, 2);
}

// log(level 0..3, message): the DSL's log.debug/info/warning/error.
int nativeLog(lua_State* L) {
  int level = static_cast<int>(luaL_checkinteger(L, 1));
  size_t len = 0;
  const char* msg = luaL_checklstring(L, 2, &len);
  if (level < 0) level = 0;
  if (level > 3) level = 3;
  auto lv = static_cast<core::LogLevel>(level);
  if (core::logLevel() <= lv || lv == core::LogLevel::kError) {
    core::logLine(lv, std::string_view(msg, len));
  }
  return 0;
}

// Calls the function below the arguments on the stack with the message handler at
// `handler`; on error returns the message (and pops it).
Status pcallStatus(lua_State* L, int nargs, int nresults, int handler) {
  if (lua_pcall(L, nargs, nresults, handler) == 0) return Status();
  std::string msg = explainMemoryError(L, describeError(L, -1));
  lua_pop(L, 1);
  return Status::error(std::move(msg));
}

Result<std::string> readFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Status::error("cannot read config \"" + path + "\": " + std::strerror(errno));
  }
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  bool bad = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (bad) return Status::error("cannot read config \"" + path + "\": " + std::strerror(err));
  return text;
}

std::string directoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

}  // namespace

ScriptState::ScriptState(lua_State* L, std::unique_ptr<LuaMemory> memory)
    : memory_(std::move(memory)), L_(L) {
  host_.L = L;
  host_.install();
  timers_ = std::make_unique<TimerSet>(host_);
  sockets_ = std::make_unique<SocketPool>(host_);
  host_.timers = timers_.get();
  host_.sockets = sockets_.get();
}

ScriptState::~ScriptState() {
  // Whatever still waits or is pooled goes before the state (its userdata and refs).
  timers_->stopAll();
  sockets_->clear();
  host_.timers = nullptr;
  host_.sockets = nullptr;
  timers_.reset();
  sockets_.reset();
  if (L_ != nullptr) lua_close(L_);
  // With the counting allocator a state's memory came from malloc, not from LuaJIT's own
  // mmap-backed allocator that lua_close unmaps: give the pages freed back to the system,
  // or the RSS of a process that reloads often creeps up with malloc's fragmentation
  // (test_reload.py, 1,000 reloads within 10% RSS). A state closes once per reload and
  // worker: the cost (a walk of malloc's free lists) is not on the data path.
  if (memory_) malloc_trim(0);
}

Result<std::unique_ptr<ScriptState>> ScriptState::load(const std::string& path,
                                                       const LoadOptions& options) {
  auto text = readFile(path);
  if (!text.ok()) return text.status();
  return loadSource(path, std::move(*text), options);
}

Result<std::unique_ptr<ScriptState>> ScriptState::loadSource(const std::string& path,
                                                             std::string text,
                                                             const LoadOptions& options) {
  auto memory = std::make_unique<LuaMemory>();
  lua_State* L = lua_newstate(&LuaMemory::alloc, memory.get());
  if (L == nullptr) {
    // LuaJIT without GC64 on x86_64 only takes its own allocator (lua_memory.h).
    memory.reset();
    L = luaL_newstate();
    static std::atomic<bool> warned{false};
    if (L != nullptr && options.maxmem != 0 && !warned.exchange(true)) {
      core::logWarning(
          "this LuaJIT refuses a custom allocator: global.lua.maxmem is not "
          "enforced");
    }
  }
  if (L == nullptr) return Status::error("cannot create a Lua state (out of memory)");
  if (memory) memory->limit = options.maxmem;
  std::unique_ptr<ScriptState> state(new ScriptState(L, std::move(memory)));
  state->path_ = path;
  state->script_ = std::move(text);
  Status st = state->evaluate(options);
  if (!st.ok()) return st;
  return state;
}

Status ScriptState::evaluate(const LoadOptions& options) {
  lua_State* L = L_;
  luaL_openlibs(L);
  // Interpreter only: the runaway guard depends on it (lua/run_budget.h). After
  // luaL_openlibs, whose luaopen_jit turns the compiler on.
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  setScriptPath(L, path_);
  setMainThread(L);
  installStdlib(L);
  registerCrescentLib(L);
  registerWaits(L);
  registerSockets(L);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, kHooksKey);

  lua_pushcfunction(L, &messageHandler);
  int handler = lua_gettop(L);

  // ctx = require("crescent.config").install{ path, dir, text, hooks, log }
  lua_getglobal(L, "require");
  lua_pushstring(L, "crescent.config");
  if (Status st = pcallStatus(L, 1, 1, handler); !st.ok()) {
    lua_settop(L, 0);
    return Status::error("internal error: cannot load crescent.config: " + st.message());
  }
  lua_getfield(L, -1, "install");
  lua_createtable(L, 0, 6);
  lua_pushboolean(L, options.quiet);
  lua_setfield(L, -2, "quiet");
  lua_pushlstring(L, path_.data(), path_.size());
  lua_setfield(L, -2, "path");
  std::string dir = directoryOf(path_);
  lua_pushlstring(L, dir.data(), dir.size());
  lua_setfield(L, -2, "dir");
  lua_pushlstring(L, script_.data(), script_.size());
  lua_setfield(L, -2, "text");
  lua_getfield(L, LUA_REGISTRYINDEX, kHooksKey);
  lua_setfield(L, -2, "hooks");
  pushGuarded<nativeLog>(L);
  lua_setfield(L, -2, "log");
  lua_createtable(L, 0, static_cast<int>(options.modules.size()));
  for (const auto& [file, text] : options.modules) {
    lua_pushlstring(L, text.data(), text.size());
    lua_setfield(L, -2, file.c_str());
  }
  lua_setfield(L, -2, "modules");
  if (Status st = pcallStatus(L, 1, 1, handler); !st.ok()) {
    lua_settop(L, 0);
    return Status::error("internal error: crescent.config install: " + st.message());
  }
  lua_setfield(L, LUA_REGISTRYINDEX, kConfigCtxKey);
  lua_settop(L, handler);

  std::string chunkname = "@" + path_;
  if (luaL_loadbuffer(L, script_.data(), script_.size(), chunkname.c_str()) != 0) {
    std::string msg = fixLocation(describeError(L, -1), path_);
    lua_settop(L, 0);
    return Status::error(std::move(msg));
  }
  Status run;
  {
    RunBudget budget(L, options.budget_ms, "config script", lua_gettop(L));
    run = pcallStatus(L, 0, 0, handler);
  }
  if (!run.ok()) {
    lua_settop(L, 0);
    return run;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, kConfigCtxKey);
  lua_getfield(L, -1, "seal");
  lua_remove(L, -2);
  Status sealed = pcallStatus(L, 0, 0, handler);
  lua_settop(L, 0);
  return sealed;
}

Result<std::shared_ptr<core::Config>> ScriptState::buildConfig() const {
  lua_State* L = L_;
  int top = lua_gettop(L);
  lua_pushcfunction(L, &messageHandler);
  int handler = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, kConfigCtxKey);
  lua_getfield(L, -1, "resolve");
  lua_remove(L, -2);
  if (Status st = pcallStatus(L, 0, 1, handler); !st.ok()) {
    lua_settop(L, top);
    return st;
  }
  auto config = buildConfigFromLua(L, lua_gettop(L));
  lua_settop(L, top);
  if (!config.ok()) return config.status();
  (*config)->path = path_;
  (*config)->script = script_;
  return config;
}

bool ScriptState::pushHook(int id) const {
  return pushHook(L_, id);
}

bool ScriptState::pushHook(lua_State* L, int id) const {
  lua_getfield(L, LUA_REGISTRYINDEX, kHooksKey);
  lua_rawgeti(L, -1, id);
  lua_remove(L, -2);
  if (lua_type(L, -1) == LUA_TFUNCTION) return true;
  lua_pop(L, 1);
  return false;
}

bool ScriptState::setMemoryLimit(uint64_t bytes) {
  if (!memory_) return bytes == 0;
  memory_->limit = bytes;
  return true;
}

void ScriptState::enableJit() {
  luaJIT_setmode(L_, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
}

int ScriptState::hookCount() const {
  lua_getfield(L_, LUA_REGISTRYINDEX, kHooksKey);
  int n = static_cast<int>(lua_objlen(L_, -1));
  lua_pop(L_, 1);
  return n;
}

}  // namespace crescent::lua
