#include "core/backend/server.h"

#include <algorithm>
#include <chrono>

#include "core/backend/balancer.h"
#include "core/backend/source_binding.h"
#include "core/base/log.h"
#include "core/net/event_loop.h"

namespace crescent::core {

uint64_t monotonicMs() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

const char* adminStateName(AdminState s) {
  switch (s) {
    case AdminState::kReady:
      return "ready";
    case AdminState::kDrain:
      return "drain";
    case AdminState::kMaint:
      return "maint";
  }
  return "?";
}

// Server ---------------------------------------------------------------------------------

namespace {
std::atomic<uint64_t> next_pool_key{1};
}  // namespace

ServerShared::ServerShared() : pool_key(next_pool_key.fetch_add(1, std::memory_order_relaxed)) {}

Server::Server(Backend& backend, const ServerConfig& cfg, size_t index,
               std::shared_ptr<ServerShared> shared)
    : backend_(backend),
      config_(cfg),
      index_(index),
      sh_(shared ? std::move(shared) : std::make_shared<ServerShared>()),
      weight_(cfg.weight),
      maxconn_(cfg.maxconn) {
  {
    std::lock_guard<std::mutex> lock(sh_->mu);
    sh_->members.push_back(this);
    sh_->member_count.store(static_cast<int>(sh_->members.size()), std::memory_order_seq_cst);
  }
  if (!cfg.source.empty()) source_ = std::make_unique<SourcePicker>(cfg.source);
  if (!cfg.agent.enabled) {
    // A reload removed this server's agent: what it last said no longer holds.
    std::lock_guard<std::mutex> lock(sh_->state_mu);
    if (!sh_->agent_up.exchange(true, std::memory_order_relaxed))
      sh_->up.store(sh_->health_up.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}

Server::~Server() = default;

const char* Server::stateName() const {
  AdminState a = admin();
  if (a == AdminState::kMaint) return "MAINT";
  if (!up()) return "DOWN";
  if (a == AdminState::kDrain) return "DRAIN";
  return "UP";
}

bool Server::setUp(bool up, const std::string& reason) {
  return changeUp(sh_->health_up, up, reason);
}

bool Server::setAgentUp(bool up, const std::string& reason) {
  return changeUp(sh_->agent_up, up, reason);
}

bool Server::changeUp(std::atomic<bool>& part, bool value, const std::string& reason) {
  bool up = false;
  {
    std::lock_guard<std::mutex> lock(sh_->state_mu);
    part.store(value, std::memory_order_relaxed);
    up = sh_->health_up.load(std::memory_order_relaxed) &&
         sh_->agent_up.load(std::memory_order_relaxed);
    if (sh_->up.exchange(up, std::memory_order_acq_rel) == up) return false;
  }
  uint64_t now = monotonicMs();
  sh_->last_change.store(now, std::memory_order_relaxed);
  sh_->observed_errors.store(0, std::memory_order_relaxed);
  if (up) sh_->up_since.store(now, std::memory_order_relaxed);
  int usable = 0;
  for (auto& s : backend_.servers())
    if (s->usable()) ++usable;
  if (up) {
    logWarning("server {}/{} is UP, reason: {}. {} active and backup servers usable.",
               backend_.name(), name(), reason, usable);
  } else {
    logWarning("server {}/{} is DOWN, reason: {}. {} active and backup servers left.{}",
               backend_.name(), name(), reason, usable,
               usable == 0 ? " backend has no server available!" : "");
  }
  backend_.serversChanged();
  if (up) {
    backend_.dispatchAll();
  } else {
    backend_.requeue(*this);
  }
  return true;
}

bool Server::setAdmin(AdminState s, const std::string& why) {
  AdminState was = sh_->admin.exchange(s, std::memory_order_acq_rel);
  if (was == s) return false;
  if (was == AdminState::kMaint) sh_->up_since.store(monotonicMs(), std::memory_order_relaxed);
  logInfo("server {}/{} state {} -> {} ({})", backend_.name(), name(), adminStateName(was),
          adminStateName(s), why);
  backend_.serversChanged();
  if (s == AdminState::kReady) {
    backend_.dispatchAll();
  } else {
    backend_.requeue(*this);
  }
  return true;
}

void Server::setWeight(int w) {
  w = std::clamp(w, 0, 256);
  int was = weight_.exchange(w, std::memory_order_relaxed);
  if (was == w) return;
  backend_.serversChanged();
  if (w > 0) backend_.dispatchAll();
}

void Backend::clearCounters(bool all) {
  sh_->queued_max.store(queued(), std::memory_order_relaxed);
  if (!all) return;
  sh_->total.store(0, std::memory_order_relaxed);
  sh_->queue_timeouts.store(0, std::memory_order_relaxed);
  for (auto& s : servers()) {
    ServerShared& x = *s->shared();
    x.total.store(0, std::memory_order_relaxed);
    x.econ.store(0, std::memory_order_relaxed);
    x.retries.store(0, std::memory_order_relaxed);
    x.redispatches.store(0, std::memory_order_relaxed);
    x.chkfail.store(0, std::memory_order_relaxed);
  }
}

Address Server::address() const {
  if (!addr_set_.load(std::memory_order_acquire)) return config_.address;
  std::lock_guard lock(addr_mu_);
  return addr_;
}

void Server::setAddress(const Address& a) {
  {
    std::lock_guard lock(addr_mu_);
    addr_ = a;
  }
  addr_set_.store(true, std::memory_order_release);
  pool_key_.store(next_pool_key.fetch_add(1, std::memory_order_relaxed), std::memory_order_relaxed);
}

void Server::setMaxconn(int n) {
  n = std::max(0, n);
  int was = maxconn_.exchange(n, std::memory_order_relaxed);
  if (was == n) return;
  backend_.serversChanged();
  if (n == 0 || n > was) backend_.dispatchAll();
}

int Server::effectiveWeight(uint64_t now_ms) const {
  int w = weight();
  uint64_t ss = config_.slowstart;
  if (ss == 0 || w == 0) return w;
  uint64_t since = sh_->up_since.load(std::memory_order_relaxed);
  if (since == 0 || now_ms >= since + ss) return w;
  uint64_t elapsed = now_ms > since ? now_ms - since : 0;
  // Round up: a server in slowstart always gets some traffic.
  uint64_t e = (static_cast<uint64_t>(w) * elapsed + ss - 1) / ss;
  return static_cast<int>(std::max<uint64_t>(1, e));
}

bool Server::tryAcquire() {
  int cur = sh_->cur.load(std::memory_order_relaxed);
  for (;;) {
    int m = maxconn();
    if (m > 0 && cur >= m) return false;
    if (sh_->cur.compare_exchange_weak(cur, cur + 1, std::memory_order_seq_cst)) break;
  }
  sh_->total.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Server::acquire() {
  sh_->cur.fetch_add(1, std::memory_order_seq_cst);
  sh_->total.fetch_add(1, std::memory_order_relaxed);
}

void Server::release() {
  sh_->cur.fetch_sub(1, std::memory_order_seq_cst);
  // Pairs with Backend::assign(): it counts a waiter before re-trying the slots, so
  // either it sees this free slot or this sees the waiter (no lost wake-up).
  if (backend_.waiting_.load(std::memory_order_seq_cst) > 0) backend_.onSlotFreed(*this);
  // The slot is the server's, whatever generation: a request another generation queued
  // for it may take it (the same pairing, with that generation's backend).
  if (sh_->member_count.load(std::memory_order_seq_cst) < 2) return;
  std::lock_guard<std::mutex> lock(sh_->mu);
  for (Server* m : sh_->members) {
    if (m != this && m->backend_.waiting_.load(std::memory_order_seq_cst) > 0)
      m->backend_.onSlotFreed(*m);
  }
}

void Server::detach() {
  std::lock_guard<std::mutex> lock(sh_->mu);
  std::erase(sh_->members, this);
  sh_->member_count.store(static_cast<int>(sh_->members.size()), std::memory_order_seq_cst);
}

void Server::recordResponseTime(uint64_t ms) {
  backend_.recordResponseTime(ms);
  uint64_t sample = std::min<uint64_t>(ms, 1u << 26) * 16;
  uint64_t old = sh_->rtt_x16.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = old == 0 ? std::max<uint64_t>(sample, 1) : old - old / 8 + sample / 8;
    if (next == 0) next = 1;
  } while (!sh_->rtt_x16.compare_exchange_weak(old, next, std::memory_order_relaxed));
}

void Backend::recordResponseTime(uint64_t ms) {
  size_t i = 0;
  while (i < std::size(kResponseTimeBucketsMs) && ms > kResponseTimeBucketsMs[i]) ++i;
  sh_->rt_buckets[i].fetch_add(1, std::memory_order_relaxed);
  sh_->rt_sum_ms.fetch_add(ms, std::memory_order_relaxed);
}

double Server::responseTimeMs() const {
  return static_cast<double>(sh_->rtt_x16.load(std::memory_order_relaxed)) / 16.0;
}

void Server::observe(bool ok, const char* what, bool layer7) {
  const HealthCheckConfig& c = config_.check;
  if (c.observe == HealthCheckConfig::Observe::kNone) return;
  if (layer7 && c.observe == HealthCheckConfig::Observe::kLayer4) return;
  // With layer7, a connection that opens says nothing about the responses: only a good
  // response ends a run of errors.
  if (ok && !layer7 && c.observe == HealthCheckConfig::Observe::kLayer7) return;
  if (ok) {
    sh_->observed_errors.store(0, std::memory_order_relaxed);
    return;
  }
  int n = sh_->observed_errors.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n >= c.error_limit && up()) {
    setUp(false, fmt::format("{} consecutive errors observed on traffic (last: {})", n, what));
  }
}

// Backend ---------------------------------------------------------------------------------

Backend::Backend(const BackendConfig& cfg, size_t index, const Backend* prev)
    : config_(cfg),
      index_(index),
      sh_(prev != nullptr ? prev->sh_ : std::make_shared<BackendShared>()) {
  servers_.reserve(cfg.servers.size());
  for (size_t i = 0; i < cfg.servers.size(); ++i) {
    // A server keeps its state across a reload when it is the same server: same name,
    // same address, same transport. Anything else is a new server, checked afresh.
    std::shared_ptr<ServerShared> shared;
    if (prev != nullptr) {
      for (const auto& old : prev->servers_) {
        const ServerConfig& o = old->config();
        if (o.name == cfg.servers[i].name && o.text == cfg.servers[i].text &&
            o.tls == cfg.servers[i].tls && o.send_proxy == cfg.servers[i].send_proxy) {
          shared = old->shared();
          break;
        }
      }
    }
    servers_.push_back(std::make_unique<Server>(*this, cfg.servers[i], i, std::move(shared)));
  }
  server_queues_.resize(servers_.size());
  balancer_ = makeBalancer(*this);
}

Backend::~Backend() {
  // First of all: no other generation may hand this backend a slot once it starts going.
  for (auto& s : servers_) s->detach();
}

Server* Backend::findServer(std::string_view name) {
  for (auto& s : servers_)
    if (s->name() == name) return s.get();
  return nullptr;
}

bool Backend::anyUsable() const {
  for (const auto& s : servers_)
    if (s->usable()) return true;
  return false;
}

void Backend::serversChanged() {
  balancer_->update();
}

Backend::Assignment Backend::assign(Server* chosen, QueueTicket::Waiter& waiter, EventLoop& loop) {
  Assignment a;
  if (chosen != nullptr && chosen->tryAcquire()) {
    a.kind = Assignment::Kind::kAcquired;
    a.server = chosen;
    return a;
  }
  if (chosen == nullptr && !anyUsable()) return a;  // kNoServer

  std::lock_guard<std::mutex> lock(mu_);
  // Bound the queue (maxqueue).
  if (chosen != nullptr) {
    int mq = chosen->config().maxqueue;
    if (mq > 0 && chosen->queued() >= mq) {
      a.kind = Assignment::Kind::kQueueFull;
      a.server = chosen;
      return a;
    }
  } else {
    int64_t limit = 0;
    bool bounded = true;
    for (const auto& s : servers_) {
      if (!s->usable()) continue;
      if (s->config().maxqueue <= 0) bounded = false;
      limit += s->config().maxqueue;
    }
    if (bounded && backend_queued_ >= limit) {
      a.kind = Assignment::Kind::kQueueFull;
      return a;
    }
  }
  // Count the waiter first, then look at the slots again (see Server::release()).
  waiting_.fetch_add(1, std::memory_order_seq_cst);
  Server* now_free = nullptr;
  if (chosen != nullptr) {
    if (chosen->tryAcquire()) now_free = chosen;
  } else {
    // Only servers the balancer could pick: backups while no active server is usable.
    bool active = false;
    for (auto& s : servers_)
      if (!s->backup() && s->usable()) active = true;
    for (auto& s : servers_) {
      if (s->usable() && s->backup() != active && s->tryAcquire()) {
        now_free = s.get();
        break;
      }
    }
  }
  if (now_free != nullptr) {
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    a.kind = Assignment::Kind::kAcquired;
    a.server = now_free;
    return a;
  }
  auto t = std::make_shared<QueueTicket>();
  t->loop = &loop;
  t->waiter = &waiter;
  t->target = chosen;
  t->seq = ++seq_;
  if (chosen != nullptr) {
    server_queues_[chosen->index()].push_back(t);
    chosen->queued_.fetch_add(1, std::memory_order_relaxed);
  } else {
    queue_.push_back(t);
    ++backend_queued_;
  }
  int q = waiting_.load(std::memory_order_relaxed);
  int m = sh_->queued_max.load(std::memory_order_relaxed);
  while (q > m && !sh_->queued_max.compare_exchange_weak(m, q, std::memory_order_relaxed)) {
  }
  a.kind = Assignment::Kind::kQueued;
  a.server = chosen;
  a.ticket = std::move(t);
  return a;
}

void Backend::cancel(const QueueTicketPtr& t) {
  if (!t) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (t->state == QueueTicket::State::kWaiting) {
    // Left in its deque, skipped and dropped when it reaches the front.
    t->state = QueueTicket::State::kCancelled;
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    if (t->target != nullptr) {
      t->target->queued_.fetch_sub(1, std::memory_order_relaxed);
    } else {
      --backend_queued_;
    }
  }
  // Granted: the grant is already posted to the waiter's loop; with no waiter it
  // releases the slot when it runs (same thread as this call, so no race on `waiter`).
  // Otherwise nothing will run for it: drop what it kept alive (a cancelled ticket may
  // stay in its deque until trimmed, and must not hold its generation meanwhile).
  t->waiter = nullptr;
  if (t->state == QueueTicket::State::kCancelled) t->keepalive.reset();
}

void Backend::trim(std::deque<QueueTicketPtr>& q) {
  while (!q.empty() && q.front()->state != QueueTicket::State::kWaiting) q.pop_front();
}

void Backend::requeue(Server& s) {
  if (s.queued() == 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& own = server_queues_[s.index()];
    std::deque<QueueTicketPtr> merged;
    for (auto& t : own) {
      if (t->state != QueueTicket::State::kWaiting) continue;
      t->target = nullptr;
      s.queued_.fetch_sub(1, std::memory_order_relaxed);
      ++backend_queued_;
      merged.push_back(t);
    }
    own.clear();
    if (merged.empty()) return;
    for (auto& t : queue_)
      if (t->state == QueueTicket::State::kWaiting) merged.push_back(t);
    std::sort(merged.begin(), merged.end(),
              [](const QueueTicketPtr& a, const QueueTicketPtr& b) { return a->seq < b->seq; });
    queue_.swap(merged);
  }
  dispatchAll();
}

void Backend::onSlotFreed(Server& s) {
  std::lock_guard<std::mutex> lock(mu_);
  dispatchLocked(s);
}

void Backend::dispatchAll() {
  if (waiting_.load(std::memory_order_seq_cst) == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : servers_) dispatchLocked(*s);
}

void Backend::dispatchLocked(Server& s) {
  auto& own = server_queues_[s.index()];
  for (;;) {
    trim(own);
    trim(queue_);
    // The backend's queue may use this server only if balancing would pick it: usable,
    // and not a backup while a non-backup server is usable.
    bool shared_ok = !queue_.empty() && s.usable();
    if (shared_ok && s.backup()) {
      for (auto& o : servers_)
        if (!o->backup() && o->usable()) shared_ok = false;
    }
    QueueTicketPtr next;
    bool from_own = false;
    if (!own.empty() && (!shared_ok || own.front()->seq < queue_.front()->seq)) {
      next = own.front();
      from_own = true;
    } else if (shared_ok) {
      next = queue_.front();
    } else {
      return;
    }
    if (!s.tryAcquire()) return;
    if (from_own) {
      own.pop_front();
      s.queued_.fetch_sub(1, std::memory_order_relaxed);
    } else {
      queue_.pop_front();
      --backend_queued_;
    }
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    grantLocked(next, s);
  }
}

void Backend::grantLocked(const QueueTicketPtr& t, Server& s) {
  t->state = QueueTicket::State::kGranted;
  Server* srv = &s;
  t->loop->post([t, srv] {
    std::shared_ptr<void> keep = std::move(t->keepalive);
    if (t->waiter != nullptr) {
      QueueTicket::Waiter* w = t->waiter;
      t->waiter = nullptr;
      w->onQueueGranted(*srv);
    } else {
      srv->release();  // the waiter left meanwhile: pass the slot on
    }
  });
}

}  // namespace crescent::core
