#include "core/session/server_dispatch.h"

#include "core/base/log.h"

namespace crescent::core {

ServerDispatch::ServerDispatch(EventLoop& loop, std::shared_ptr<WorkerGeneration> wg,
                               size_t backend_index, Owner& owner)
    : loop_(loop), wg_(std::move(wg)), backend_(wg_->gen().backend(backend_index)), owner_(owner) {}

ServerDispatch::~ServerDispatch() {
  if (txn_ != nullptr) txn_->cancel();  // a Lua pick still waits: it must not call us
  if (ticket_) backend_.cancel(ticket_);
}

ServerDispatch::Outcome ServerDispatch::start(ScriptTxn* txn, const PickRequest& req) {
  pick_ = req;
  const LuaBalancerConfig& lb = backend_.config().lua_balancer;
  if (!lb.enabled() || txn == nullptr) return assign();
  usableServers(backend_, cand_);
  std::erase_if(cand_, [](Server* s) { return s->full(); });
  if (cand_.empty()) return assign();
  lua_ = PickResult();
  if (txn->balancerPick(lb, backend_, cand_, lua_, *this) == ScriptStatus::kPending) {
    txn_ = txn;
    return Outcome::kPending;
  }
  return assign();
}

void ServerDispatch::onScriptDone() {
  txn_ = nullptr;
  Outcome o = assign();
  owner_.onDispatched(o);  // may destroy us: last statement
}

// The Lua pick's choice when it made one and the server still has room (a pick that
// waited may find it full or down by now), else the algorithm's; then the slot or a queue.
ServerDispatch::Outcome ServerDispatch::assign() {
  const LuaBalancerConfig& lb = backend_.config().lua_balancer;
  if (!lua_.error.empty()) {
    logWarning("backend \"{}\": balancer \"{}\": {}; falling back to roundrobin", backend_.name(),
               lb.name, lua_.error);
  }
  Server* chosen = lua_.server;
  lua_ = PickResult();
  cand_.clear();
  if (chosen != nullptr && chosen->usable() && chosen->tryAcquire()) {
    server_ = chosen;
    return Outcome::kAssigned;
  }
  pick_.now_ms = monotonicMs();
  chosen = backend_.balancer().pick(pick_);
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
