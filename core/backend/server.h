#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/config/config.h"

namespace crescent::core {

/// Runtime state of one configured server, shared by every worker of a generation.
/// Counters are atomics (relaxed: they feed stats and balancing, not synchronisation).
class Server {
 public:
  Server(const ServerConfig& cfg, size_t index)
      : config_(cfg), index_(index), weight_(cfg.weight) {}

  const ServerConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  size_t index() const { return index_; }

  int weight() const { return weight_.load(std::memory_order_relaxed); }
  /// Concurrent connections (TCP) or requests (HTTP) being served.
  int current() const { return cur_.load(std::memory_order_relaxed); }
  /// True when maxconn is set and reached.
  bool full() const { return config_.maxconn > 0 && current() >= config_.maxconn; }

  void acquire() {
    cur_.fetch_add(1, std::memory_order_relaxed);
    total_.fetch_add(1, std::memory_order_relaxed);
  }
  void release() { cur_.fetch_sub(1, std::memory_order_relaxed); }
  void countConnectError() { econ_.fetch_add(1, std::memory_order_relaxed); }
  void countRetry() { retries_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t total() const { return total_.load(std::memory_order_relaxed); }

 private:
  const ServerConfig& config_;
  size_t index_;
  std::atomic<int> weight_;
  std::atomic<int> cur_{0};
  std::atomic<uint64_t> total_{0};
  std::atomic<uint64_t> econ_{0};
  std::atomic<uint64_t> retries_{0};
};

/// Runtime state of one backend: its servers and counters, shared by the workers.
class Backend {
 public:
  Backend(const BackendConfig& cfg, size_t index);
  const BackendConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  size_t index() const { return index_; }
  std::vector<std::unique_ptr<Server>>& servers() { return servers_; }
  int current() const { return cur_.load(std::memory_order_relaxed); }
  void acquire() { cur_.fetch_add(1, std::memory_order_relaxed); }
  void release() { cur_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  const BackendConfig& config_;
  size_t index_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::atomic<int> cur_{0};
};

/// Smooth weighted round robin (the nginx scheme: each pick adds every usable server's
/// weight to its running score, takes the highest, and subtracts the total). Spreads a
/// server's turns evenly instead of in bursts. One instance per backend, shared by the
/// workers (as HAProxy shares its LB tree between threads) so that the rotation holds
/// across connections whichever worker accepts them; pick() takes a short mutex.
/// Servers with weight 0 or at maxconn are skipped.
class RoundRobin {
 public:
  explicit RoundRobin(Backend& backend);
  /// The next server, or nullptr when none is usable. `exclude` (may be null) is skipped
  /// unless it is the only usable one (used by redispatch). Thread-safe.
  Server* pick(const Server* exclude = nullptr);

 private:
  Backend& backend_;
  std::mutex mu_;
  std::vector<int64_t> score_;  // guarded by mu_
};

}  // namespace crescent::core
