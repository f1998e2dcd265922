#include "core/session/generation.h"

#include "core/tls/tls_context.h"

namespace crescent::core {

Generation::Generation(uint64_t id, std::shared_ptr<const Config> config,
                       std::shared_ptr<const tls::Contexts> tls)
    : id_(id), config_(std::move(config)), tls_(std::move(tls)) {
  for (size_t i = 0; i < config_->backends.size(); ++i) {
    backends_.push_back(std::make_unique<Backend>(config_->backends[i], i));
  }
  for (size_t i = 0; i < config_->frontends.size(); ++i)
    frontend_stats_.push_back(std::make_unique<FrontendStats>());
}

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
