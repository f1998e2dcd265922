#include "core/session/server_dispatch.h"

#include "core/base/log.h"

namespace crescent::core {

ServerDispatch::ServerDispatch(EventLoop& loop, std::shared_ptr<WorkerGeneration> wg,
                               size_t backend_index, Owner& owner)
    : loop_(loop), wg_(std::move(wg)), backend_(wg_->gen().backend(backend_index)), owner_(owner) {}

ServerDispatch::~ServerDispatch() {
  if (ticket_) backend_.cancel(ticket_);
}

ServerDispatch::Outcome ServerDispatch::start(RequestContext& ctx, const PickRequest& req) {
  Server* chosen = nullptr;
  const LuaBalancerConfig& lb = backend_.config().lua_balancer;
  ScriptRunner* scripts = wg_->scripts();
  if (lb.enabled() && scripts != nullptr) {
    thread_local std::vector<Server*> cand;
    usableServers(backend_, cand);
    std::erase_if(cand, [](Server* s) { return s->full(); });
    if (!cand.empty()) {
      std::string error;
      chosen = scripts->runBalancerPick(lb, backend_, ctx, cand, error);
      if (!error.empty()) {
        logWarning("backend \"{}\": balancer \"{}\": {}; falling back to roundrobin",
                   backend_.name(), lb.name, error);
      }
      if (chosen != nullptr && !chosen->tryAcquire()) chosen = nullptr;  // raced to full
      if (chosen != nullptr) {
        server_ = chosen;
        return Outcome::kAssigned;
      }
    }
  }
  chosen = backend_.balancer().pick(req);
  Backend::Assignment a = backend_.assign(chosen, *this, loop_);
  switch (a.kind) {
    case Backend::Assignment::Kind::kAcquired:
      server_ = a.server;
      return Outcome::kAssigned;
    case Backend::Assignment::Kind::kNoServer:
      return Outcome::kNoServer;
    case Backend::Assignment::Kind::kQueueFull:
      return Outcome::kQueueFull;
    case Backend::Assignment::Kind::kQueued:
      break;
  }
  ticket_ = std::move(a.ticket);
  ticket_->keepalive = wg_;  // a grant arriving after we left still finds its server
  queued_at_ = loop_.now();
  const Timeouts& t = backend_.config().timeout;
  uint64_t ms = t.queue > 0 ? t.queue : t.connect;
  if (ms > 0) {
    timer_ = Timer::create(loop_, &ServerDispatch::onTimer, this);
    timer_->start(ms);
  }
  return Outcome::kQueued;
}

void ServerDispatch::onQueueGranted(Server& server) {
  ticket_.reset();
  if (timer_) timer_->stop();
  queue_ms_ = loop_.now() - queued_at_;
  server_ = &server;
  owner_.onQueueGranted(server);  // may destroy us: last statement
}

void ServerDispatch::onTimer(void* ctx) {
  auto* self = static_cast<ServerDispatch*>(ctx);
  if (!self->ticket_) return;
  self->backend_.cancel(self->ticket_);
  self->ticket_.reset();
  self->queue_ms_ = self->loop_.now() - self->queued_at_;
  self->backend_.countQueueTimeout();
  self->owner_.onQueueTimeout();  // may destroy us: last statement
}

}  // namespace crescent::core
