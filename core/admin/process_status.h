#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/session/generation.h"
#include "core/session/worker_context.h"

namespace crescent::core {

/// What the process publishes about itself for readers on other threads (the admin
/// service runs on the workers; the process changes on the main thread): the live
/// generations, reload counts, whether a reload is under way. The main thread writes
/// (publish(), setReloading()); any thread reads (snapshot()). Thread-safe.
class ProcessStatus {
 public:
  /// One live generation and its state as `show generations` names it: "current",
  /// "draining", "old" or "closing".
  struct GenerationView {
    std::shared_ptr<Generation> gen;
    std::string state;
  };
  struct Snapshot {
    uint64_t uptime_ms = 0;
    int threads = 0;
    uint64_t reloads = 0;
    uint64_t reload_failures = 0;
    bool reloading = false;   ///< a reload is under way (on_reload hooks may run)
    bool stopping = false;    ///< soft or hard stop under way
    uint64_t current_id = 0;  ///< the newest generation; 0 before the first one serves
    /// The oldest generation a worker accepts with (all workers serve current_id when
    /// equal); 0 when some worker has not started.
    uint64_t oldest_serving = 0;
    int actconn = 0;  ///< client connections, all frontends
    uint64_t cumconn = 0;
    /// The current generation first, then the old ones, newest first. Holding these keeps
    /// the generations alive: drop the snapshot soon.
    std::vector<GenerationView> generations;
  };

  /// `counters`: the process's, read at snapshot(); outlives this object.
  explicit ProcessStatus(const ProcessCounters& counters) : counters_(counters) {}

  /// Main thread: the process started serving at `started_ms` (monotonicMs) with `threads`.
  void setStarted(uint64_t started_ms, int threads);
  /// Main thread, once, before the workers start: each worker's serving generation id
  /// (Worker::servingGeneration(); they outlive this object's readers).
  void setWorkers(std::vector<const std::atomic<uint64_t>*> serving) {
    serving_ = std::move(serving);
  }
  /// Main thread: replaces the published generations and counts.
  void publish(std::vector<std::pair<std::weak_ptr<Generation>, std::string>> generations,
               uint64_t current_id, uint64_t reloads, uint64_t reload_failures, bool stopping);
  /// Main thread: a reload starts (true) or ended, applied or refused (false).
  void setReloading(bool on) { reloading_.store(on, std::memory_order_release); }

  /// Any thread: a consistent copy; expired generations are left out.
  Snapshot snapshot() const;

 private:
  const ProcessCounters& counters_;
  std::atomic<bool> reloading_{false};
  std::vector<const std::atomic<uint64_t>*> serving_;  // set before readers exist
  mutable std::mutex mu_;
  // guarded by mu_
  uint64_t started_ms_ = 0;
  int threads_ = 0;
  uint64_t current_id_ = 0;
  uint64_t reloads_ = 0;
  uint64_t reload_failures_ = 0;
  bool stopping_ = false;
  std::vector<std::pair<std::weak_ptr<Generation>, std::string>> generations_;
};

}  // namespace crescent::core
