#pragma once

// Helpers for the lua/ unit tests: write a config to a temporary file and load it.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "core/base/status.h"
#include "core/config/config.h"
#include "lua/script_state.h"

namespace crescent::lua::testing {

/// A private temporary directory, removed with its content at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "crescent-lua-XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    dir_ = p ? p : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& path() const { return dir_; }

  /// Writes `text` to dir/name and returns the full path.
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = dir_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

 private:
  std::string dir_;
};

/// Loads and builds `text` saved as `name`; returns the config or the error with the
/// temporary directory stripped from paths ("cfg.lua:3: ...").
struct Loaded {
  std::unique_ptr<ScriptState> state;
  std::shared_ptr<core::Config> config;
  std::string error;
};

inline std::string stripDir(std::string msg, const std::string& dir) {
  std::string prefix = dir + "/";
  size_t pos;
  while ((pos = msg.find(prefix)) != std::string::npos) msg.erase(pos, prefix.size());
  return msg;
}

inline Loaded loadConfig(const std::string& text, const std::string& name = "cfg.lua") {
  TempDir dir;
  Loaded out;
  std::string path = dir.write(name, text);
  auto st = ScriptState::load(path);
  if (!st.ok()) {
    out.error = stripDir(st.message(), dir.path());
    return out;
  }
  out.state = std::move(*st);
  auto cfg = out.state->buildConfig();
  if (!cfg.ok()) {
    out.error = stripDir(cfg.message(), dir.path());
    return out;
  }
  out.config = *cfg;
  return out;
}

}  // namespace crescent::lua::testing
