#include "core/admin/process_status.h"

#include <algorithm>

#include "core/backend/server.h"

namespace crescent::core {

void ProcessStatus::setStarted(uint64_t started_ms, int threads) {
  std::lock_guard<std::mutex> lock(mu_);
  started_ms_ = started_ms;
  threads_ = threads;
}

void ProcessStatus::publish(
    std::vector<std::pair<std::weak_ptr<Generation>, std::string>> generations, uint64_t current_id,
    uint64_t reloads, uint64_t reload_failures, bool stopping) {
  std::lock_guard<std::mutex> lock(mu_);
  generations_ = std::move(generations);
  current_id_ = current_id;
  reloads_ = reloads;
  reload_failures_ = reload_failures;
  stopping_ = stopping;
}

ProcessStatus::Snapshot ProcessStatus::snapshot() const {
  Snapshot s;
  s.reloading = reloading_.load(std::memory_order_acquire);
  s.actconn = counters_.actconn.load(std::memory_order_relaxed);
  s.cumconn = counters_.cumconn.load(std::memory_order_relaxed);
  for (size_t i = 0; i < serving_.size(); ++i) {
    uint64_t id = serving_[i]->load(std::memory_order_acquire);
    s.oldest_serving = i == 0 ? id : std::min(s.oldest_serving, id);
  }
  std::lock_guard<std::mutex> lock(mu_);
  s.uptime_ms = started_ms_ > 0 ? monotonicMs() - started_ms_ : 0;
  s.threads = threads_;
  s.reloads = reloads_;
  s.reload_failures = reload_failures_;
  s.stopping = stopping_;
  s.current_id = current_id_;
  for (const auto& [weak, state] : generations_) {
    if (auto g = weak.lock()) s.generations.push_back({std::move(g), state});
  }
  return s;
}

}  // namespace crescent::core
