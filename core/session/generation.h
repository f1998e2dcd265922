#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend/server.h"
#include "core/config/config.h"
#include "core/session/hooks.h"

namespace crescent::core {

namespace tls {
class Contexts;
class ServerContext;
class ClientContext;
}  // namespace tls

/// Counters of one frontend, shared by the workers.
struct FrontendStats {
  std::atomic<int> cur{0};         ///< open client connections
  std::atomic<uint64_t> total{0};  ///< accepted connections
  std::atomic<uint64_t> requests{0};
};

/// One configuration generation, process-wide (DESIGN §3): the immutable config and the
/// runtime state built from it (backends, servers, counters). Shared by the workers
/// through std::shared_ptr; sessions keep their generation alive until they end.
class Generation {
 public:
  /// `tls`: the TLS contexts built from `config` (tls::buildContexts()); null when
  /// nothing in it uses TLS.
  Generation(uint64_t id, std::shared_ptr<const Config> config,
             std::shared_ptr<const tls::Contexts> tls = nullptr);
  uint64_t id() const { return id_; }
  const Config& config() const { return *config_; }
  /// The TLS context of a bind ([frontend][bind]); null: that bind is plain TCP.
  const tls::ServerContext* bindTls(size_t frontend, size_t bind) const;
  /// The TLS context of a server ([backend][server]); null: no TLS to that server.
  const tls::ClientContext* serverTls(size_t backend, size_t server) const;
  Backend& backend(size_t i) { return *backends_[i]; }
  size_t backendCount() const { return backends_.size(); }
  FrontendStats& frontendStats(size_t i) { return *frontend_stats_[i]; }

 private:
  uint64_t id_;
  std::shared_ptr<const Config> config_;
  std::shared_ptr<const tls::Contexts> tls_;  // may be null
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::unique_ptr<FrontendStats>> frontend_stats_;
};

/// What one worker thread holds for one generation: its own Lua state (through the
/// ScriptRunner). Used only on that worker's thread.
class WorkerGeneration {
 public:
  WorkerGeneration(std::shared_ptr<Generation> gen, std::unique_ptr<ScriptRunner> scripts);
  Generation& gen() { return *gen_; }
  const Config& config() const { return gen_->config(); }
  /// May be null when the config declares no Lua hooks.
  ScriptRunner* scripts() { return scripts_.get(); }
  Backend& backend(size_t i) { return gen_->backend(i); }

 private:
  std::shared_ptr<Generation> gen_;
  std::unique_ptr<ScriptRunner> scripts_;
};

}  // namespace crescent::core
