#pragma once

#include <cstddef>

namespace crescent::lua {

/// One module of stdlib/, compiled to LuaJIT bytecode at build time (with line info).
/// `name` is the `require` name ("crescent.config" for stdlib/config.lua).
struct StdlibModule {
  const char* name;
  const char* bytecode;
  std::size_t size;
};

/// All embedded modules; the array ends with an entry whose name is nullptr.
extern const StdlibModule kStdlibModules[];

}  // namespace crescent::lua
