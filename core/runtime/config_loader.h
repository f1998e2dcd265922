#pragma once

#include <memory>
#include <string>

#include "core/base/status.h"
#include "core/config/config.h"
#include "core/session/hooks.h"

namespace crescent::core {

namespace tls {
class Contexts;
}  // namespace tls

/// What loading a configuration script produces (startup, reload, `-c`).
struct LoadedConfig {
  std::shared_ptr<const Config> config;
  std::shared_ptr<const tls::Contexts> tls;  ///< certificates and keys, loaded
  /// The state that evaluated the script, as a runner: it runs the on_reload hooks, then
  /// serves health checks' Lua `expect` functions. Null when built without Lua hooks.
  std::unique_ptr<ScriptRunner> main_runner;
};

/// Loads configuration scripts for the Process (implemented by lua/ConfigLoader; core
/// itself has no Lua). Called on the main thread only.
class ConfigLoader {
 public:
  virtual ~ConfigLoader() = default;
  /// Evaluates the script at `path` in a fresh state and builds the config and its TLS
  /// contexts. Errors are `file:line: message` (syntax, runtime error, unknown key,
  /// missing backend, unreadable certificate...). Nothing running is touched.
  virtual Result<LoadedConfig> load(const std::string& path) = 0;
  /// A fresh runner for a worker: `config`'s script text evaluated again in its own
  /// state (quietly: its log lines were printed by load()). May return null (no Lua).
  virtual Result<std::unique_ptr<ScriptRunner>> makeRunner(const Config& config) = 0;
};

}  // namespace crescent::core
