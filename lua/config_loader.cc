#include "lua/config_loader.h"

#include "core/tls/tls_context.h"
#include "lua/hook_runner.h"
#include "lua/script_state.h"
#include "lua/timers.h"

namespace crescent::lua {

core::Result<core::LoadedConfig> ConfigLoader::load(const std::string& path) {
  auto state = ScriptState::load(path);
  if (!state.ok()) return state.status();
  auto config = (*state)->buildConfig();
  if (!config.ok()) return config.status();
  // Certificates, keys and CA files are part of the configuration: a reload (or `-c`)
  // with an unreadable one fails here, before anything changes.
  auto tls = core::tls::buildContexts(**config);
  if (!tls.ok()) return tls.status();
  core::LoadedConfig out;
  out.config = std::move(*config);
  out.tls = std::move(*tls);
  // The main thread's state runs on_reload hooks and checks: the same limits as a worker's.
  const core::GlobalConfig::Lua& lc = out.config->global.lua;
  (*state)->setMemoryLimit(lc.maxmem);
  (*state)->timers().setMax(lc.max_timers);
  out.main_runner = std::make_unique<HookRunner>(std::move(*state), lc.budget_ms);
  return out;
}

core::Result<std::unique_ptr<core::ScriptRunner>> ConfigLoader::makeRunner(
    const core::Config& config) {
  ScriptState::LoadOptions quiet;
  quiet.quiet = true;  // load() already printed the script's log lines
  quiet.maxmem = config.global.lua.maxmem;
  for (size_t i = 0; i < config.files.size() && i < config.file_texts.size(); ++i)
    quiet.modules.emplace_back(config.files[i], config.file_texts[i]);
  auto state = ScriptState::loadSource(config.path, config.script, quiet);
  if (!state.ok()) return state.status();
  // The worker states run the hooks: `global { lua_jit = true }` compiles them (the
  // evaluation above ran interpreted, as always).
  if (config.global.lua_jit) (*state)->enableJit();
  (*state)->timers().setMax(config.global.lua.max_timers);
  return std::unique_ptr<core::ScriptRunner>(
      std::make_unique<HookRunner>(std::move(*state), config.global.lua.budget_ms));
}

}  // namespace crescent::lua
