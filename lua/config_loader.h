#pragma once

#include "core/runtime/config_loader.h"

namespace crescent::lua {

/// core::ConfigLoader over ScriptState and HookRunner: load() evaluates the script
/// (printing its log lines), builds the Config and its TLS contexts, and keeps the state
/// as the main runner; makeRunner() evaluates Config::script again, quietly, for a worker.
/// Stateless: one instance serves every load of the process.
class ConfigLoader final : public core::ConfigLoader {
 public:
  core::Result<core::LoadedConfig> load(const std::string& path) override;
  core::Result<std::unique_ptr<core::ScriptRunner>> makeRunner(const core::Config& config) override;
};

}  // namespace crescent::lua
