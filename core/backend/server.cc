#include "core/backend/server.h"

namespace crescent::core {

Backend::Backend(const BackendConfig& cfg, size_t index) : config_(cfg), index_(index) {
  servers_.reserve(cfg.servers.size());
  for (size_t i = 0; i < cfg.servers.size(); ++i)
    servers_.push_back(std::make_unique<Server>(cfg.servers[i], i));
}

RoundRobin::RoundRobin(Backend& backend) : backend_(backend), score_(backend.servers().size(), 0) {}

Server* RoundRobin::pick(const Server* exclude) {
  auto& servers = backend_.servers();
  std::lock_guard<std::mutex> lock(mu_);
  Server* best = nullptr;
  int64_t total = 0;
  for (int pass = 0; pass < 2 && best == nullptr; ++pass) {
    total = 0;
    for (size_t i = 0; i < servers.size(); ++i) {
      Server* s = servers[i].get();
      int w = s->weight();
      if (w <= 0 || s->full()) continue;
      if (pass == 0 && s == exclude) continue;
      score_[i] += w;
      total += w;
      if (best == nullptr || score_[i] > score_[best->index()]) best = s;
    }
  }
  if (best != nullptr) score_[best->index()] -= total;
  return best;
}

}  // namespace crescent::core
