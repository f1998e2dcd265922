#include "core/session/generation.h"

#include "core/tls/tls_context.h"

namespace crescent::core {

Generation::Generation(uint64_t id, std::shared_ptr<const Config> config,
                       std::shared_ptr<const tls::Contexts> tls, const Generation* prev)
    : id_(id), created_ms_(monotonicMs()), config_(std::move(config)), tls_(std::move(tls)) {
  for (size_t i = 0; i < config_->backends.size(); ++i) {
    const Backend* old = nullptr;
    if (prev != nullptr) {
      int j = prev->config().findBackend(config_->backends[i].name);
      if (j >= 0) old = prev->backends_[static_cast<size_t>(j)].get();
    }
    backends_.push_back(std::make_unique<Backend>(config_->backends[i], i, old));
  }
  for (size_t i = 0; i < config_->frontends.size(); ++i) {
    int j = prev != nullptr ? prev->config().findFrontend(config_->frontends[i].name) : -1;
    frontend_stats_.push_back(j >= 0 ? prev->frontend_stats_[static_cast<size_t>(j)]
                                     : std::make_shared<FrontendStats>());
  }
}

Generation::~Generation() = default;

const tls::ServerContext* Generation::bindTls(size_t frontend, size_t bind) const {
  return tls_ != nullptr ? tls_->bind(frontend, bind) : nullptr;
}

const tls::ClientContext* Generation::serverTls(size_t backend, size_t server) const {
  return tls_ != nullptr ? tls_->server(backend, server) : nullptr;
}

WorkerGeneration::WorkerGeneration(std::shared_ptr<Generation> gen,
                                   std::unique_ptr<ScriptRunner> scripts)
    : gen_(std::move(gen)), scripts_(std::move(scripts)) {
  if (scripts_) scripts_->attach(*gen_);
}

}  // namespace crescent::core
