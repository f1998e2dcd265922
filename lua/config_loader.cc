#include "lua/config_loader.h"

#include "core/tls/tls_context.h"
#include "lua/hook_runner.h"
#include "lua/script_state.h"

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
  out.main_runner = std::make_unique<HookRunner>(std::move(*state));
  return out;
}

core::Result<std::unique_ptr<core::ScriptRunner>> ConfigLoader::makeRunner(
    const core::Config& config) {
  ScriptState::LoadOptions quiet;
  quiet.quiet = true;  // load() already printed the script's log lines
  for (size_t i = 0; i < config.files.size() && i < config.file_texts.size(); ++i)
    quiet.modules.emplace_back(config.files[i], config.file_texts[i]);
  auto state = ScriptState::loadSource(config.path, config.script, quiet);
  if (!state.ok()) return state.status();
  return std::unique_ptr<core::ScriptRunner>(std::make_unique<HookRunner>(std::move(*state)));
}

}  // namespace crescent::lua
