#include "core/session/generation.h"

namespace crescent::core {

Generation::Generation(uint64_t id, std::shared_ptr<const Config> config)
    : id_(id), config_(std::move(config)) {
  for (size_t i = 0; i < config_->backends.size(); ++i) {
    backends_.push_back(std::make_unique<Backend>(config_->backends[i], i));
  }
  for (size_t i = 0; i < config_->frontends.size(); ++i)
    frontend_stats_.push_back(std::make_unique<FrontendStats>());
}

WorkerGeneration::WorkerGeneration(std::shared_ptr<Generation> gen,
                                   std::unique_ptr<ScriptRunner> scripts)
    : gen_(std::move(gen)), scripts_(std::move(scripts)) {
  if (scripts_) scripts_->attach(*gen_);
}

}  // namespace crescent::core
