#pragma once

#include <atomic>
#include <cstdint>

namespace crescent::core {

/// The process-wide count of request-body bytes crescent holds in memory, against
/// `global { tune = { body_budget = "256m" } }`: a Lua service gathers a whole request
/// body before it runs (up to `tune.max_service_body` each), and without a common cap
/// many such uploads at once could take all memory. Thread-safe (one atomic), shared by
/// every worker and generation of the process.
class BodyBudget {
 public:
  /// The process's budget.
  static BodyBudget& process();

  /// Takes `n` bytes when `used() + n <= limit` (limit 0: no limit) and returns true;
  /// otherwise takes nothing, counts a refusal and returns false (the caller answers 503).
  bool reserve(uint64_t n, uint64_t limit);
  /// Gives back `n` bytes taken with reserve().
  void release(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }

  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> refusals_{0};
};

}  // namespace crescent::core
