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

/// Counters of one frontend, shared by the workers, and by the next generation when it
/// has a frontend of the same name (counters survive a reload, DESIGN §3).
struct FrontendStats {
  std::atomic<int> cur{0};         ///< open client connections
  std::atomic<uint64_t> total{0};  ///< accepted connections
  std::atomic<uint64_t> requests{0};
};

/// One configuration generation, process-wide (DESIGN §3): the immutable config and the
/// runtime state built from it (backends, servers, counters). Shared by the workers
/// through std::shared_ptr; sessions keep their generation alive until they end, and the
/// last reference frees it (on whichever thread drops it; nothing in it is thread-bound).
class Generation {
 public:
  /// `tls`: the TLS contexts built from `config` (tls::buildContexts()); null when
  /// nothing in it uses TLS. `prev`: the generation this one replaces (a reload), or
  /// null; frontend and backend counters and server state carry over by name (see
  /// Backend). `prev` is only read during the constructor.
  Generation(uint64_t id, std::shared_ptr<const Config> config,
             std::shared_ptr<const tls::Contexts> tls = nullptr, const Generation* prev = nullptr);
  ~Generation();
  uint64_t id() const { return id_; }
  /// monotonicMs() when it was built.
  uint64_t createdMs() const { return created_ms_; }
  const Config& config() const { return *config_; }
  const std::shared_ptr<const Config>& configPtr() const { return config_; }
  const std::shared_ptr<const tls::Contexts>& tlsPtr() const { return tls_; }
  /// The TLS context of a bind ([frontend][bind]); null: that bind is plain TCP.
  const tls::ServerContext* bindTls(size_t frontend, size_t bind) const;
  /// The TLS context of a server ([backend][server]); null: no TLS to that server.
  const tls::ClientContext* serverTls(size_t backend, size_t server) const;
  Backend& backend(size_t i) { return *backends_[i]; }
  size_t backendCount() const { return backends_.size(); }
  FrontendStats& frontendStats(size_t i) { return *frontend_stats_[i]; }

  /// Client sessions currently served by this generation, all workers (`show
  /// generations`). A session counts itself in when it starts or moves to this
  /// generation (keep-alive), out when it ends or moves on. Thread-safe.
  void sessionIn() { sessions_.fetch_add(1, std::memory_order_relaxed); }
  void sessionOut() { sessions_.fetch_sub(1, std::memory_order_relaxed); }
  int sessions() const { return sessions_.load(std::memory_order_relaxed); }

 private:
  uint64_t id_;
  uint64_t created_ms_;
  std::atomic<int> sessions_{0};
  std::shared_ptr<const Config> config_;
  std::shared_ptr<const tls::Contexts> tls_;  // may be null
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::shared_ptr<FrontendStats>> frontend_stats_;
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
