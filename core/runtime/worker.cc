#include "core/runtime/worker.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

#include "core/base/log.h"
#include "core/session/handshake.h"

namespace crescent::core {

Worker::Worker(int id, ProcessCounters& counters) : id_(id), counters_(counters) {}

Worker::~Worker() {
  join();
}

Status Worker::start(std::shared_ptr<WorkerGeneration> wg,
                     const std::vector<ListenSocket>& sockets) {
  std::promise<Status> ready;
  auto fut = ready.get_future();
  thread_ = std::thread([this, wg, sockets, &ready]() mutable {
    RunningSlot::setCurrent(&slot_);  // the Lua side records its calls here (watchdog)
    Status st = setUp(std::move(wg), sockets);
    bool ok = st.ok();
    ready.set_value(std::move(st));
    if (ok) loop_.run();
    hardStop();
    // Everything holding handles or Lua states dies on this thread, before the loop closes.
    pool_.reset();
    current_.reset();
    int rc = loop_.close();
    if (rc != 0) logError("worker {}: event loop closed with handles still open", id_);
  });
  return fut.get();
}

Status Worker::setUp(std::shared_ptr<WorkerGeneration> wg,
                     const std::vector<ListenSocket>& sockets) {
  current_ = std::move(wg);
  serving_gen_.store(current_->gen().id(), std::memory_order_release);
  adopt(current_, nullptr);
  const Config& cfg = current_->config();
  // Until stop(): a worker with no listener (paused, or none of this generation's binds
  // are its) and no session must still be there for the next reload or SIGTTIN.
  loop_.keepAlive(true);
  BufferPool::local(cfg.global.bufsize);
  pool_ = std::make_unique<ConnectionPool>(loop_);
  // `global { cpu_map = { [1] = 0 } }`: pin this worker's thread.
  for (const auto& [worker, cpu] : cfg.global.cpu_map) {
    if (worker != id_) continue;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0) {
      return Status::error(fmt::format("{}: global: cpu_map: worker {} on CPU {}: {}", cfg.path,
                                       id_, cpu, std::strerror(rc)));
    }
    logInfo("worker {} pinned to CPU {}", id_, cpu);
  }
  sockets_ = sockets;
  return bindSockets(sockets, current_);
}

Status Worker::bindSockets(const std::vector<ListenSocket>& sockets,
                           const std::shared_ptr<WorkerGeneration>& prev) {
  const Config& cfg = current_->config();
  std::vector<std::unique_ptr<Bound>> kept;
  Status result;
  for (const auto& s : sockets) {
    // `bind { ..., threads = { 2 } }`: only those workers poll this socket.
    const std::vector<int>& only = cfg.frontends[s.frontend_index].binds[s.bind_index].threads;
    if (!only.empty() && std::find(only.begin(), only.end(), id_) == only.end()) continue;
    // A listener whose socket no longer listens (it was shut down, or the process opened
    // the bind again) is not kept: a fresh dup of `s.fd` replaces it.
    auto it = std::find_if(bound_.begin(), bound_.end(), [&](const std::unique_ptr<Bound>& b) {
      return b && b->key == s.key && b->listener && b->listener->listening();
    });
    if (it != bound_.end()) {
      // The same socket: keep polling it, now for the new generation's frontend.
      (*it)->frontend_index = s.frontend_index;
      (*it)->bind_index = s.bind_index;
      kept.push_back(std::move(*it));
      continue;
    }
    int fd = ::dup(s.fd);
    if (fd < 0) {
      result = Status::error(fmt::format("worker {}: dup of listening socket {}: {}", id_,
                                         s.address.toString(), std::strerror(errno)));
      continue;
    }
    auto b = std::make_unique<Bound>();
    b->worker = this;
    b->frontend_index = s.frontend_index;
    b->bind_index = s.bind_index;
    b->key = s.key;
    auto l = Listener::open(loop_, fd, s.unix_socket, *b);
    if (!l.ok()) {
      result = Status::error(s.address.toString() + ": " + l.message());
      continue;
    }
    b->listener = std::move(*l);
    kept.push_back(std::move(b));
  }
  // Listeners no longer wanted: their indices are `prev`'s.
  for (auto& b : bound_)
    if (b) closeListener(*b, prev);
  bound_ = std::move(kept);
  return result;
}

void Worker::closeListener(Bound& b, const std::shared_ptr<WorkerGeneration>& gen) {
  if (!b.listener) return;
  // A held listener holds one connection taken off the socket already: serve it rather
  // than let closing the listener reset it.
  if (b.listener->held()) {
    counters_.paused.fetch_sub(1, std::memory_order_relaxed);
    StreamPtr client = b.listener->accept();
    if (client) {
      if (!b.listener->unixSocket()) client->setNoDelay(true);
      startSession(*this, gen, b.frontend_index, b.bind_index, std::move(client));
    }
  }
  b.listener.reset();
}

void Worker::closeListeners() {
  for (auto& b : bound_)
    if (b) closeListener(*b, current_);
  bound_.clear();
}

void Worker::install(std::shared_ptr<WorkerGeneration> wg, std::vector<ListenSocket> sockets) {
  loop_.post([this, wg = std::move(wg), sockets = std::move(sockets)]() mutable {
    if (stopping_) return;
    std::shared_ptr<WorkerGeneration> prev = std::move(current_);
    current_ = std::move(wg);
    serving_gen_.store(current_->gen().id(), std::memory_order_release);
    adopt(current_, prev);
    sockets_ = std::move(sockets);
    if (!draining_ && !paused_) {
      Status st = bindSockets(sockets_, prev);
      if (!st.ok()) logError("{}", st.message());
    }
    for (Session* s = sessions_; s != nullptr;) {
      Session* next = s->next_session;
      s->onNewGeneration();
      s = next;
    }
    resumePaused();
  });
}

void Worker::adopt(const std::shared_ptr<WorkerGeneration>& wg,
                   const std::shared_ptr<WorkerGeneration>& prev) {
  if (ScriptRunner* s = wg->scripts()) s->bindLoop(loop_);
  if (prev != nullptr && prev != wg && prev->scripts() != nullptr) prev->scripts()->retire(false);
  std::erase_if(generations_, [](const std::weak_ptr<WorkerGeneration>& g) { return g.expired(); });
  generations_.push_back(wg);
}

void Worker::scriptStats(std::function<void(ScriptStats)> fn) {
  loop_.post([this, fn = std::move(fn)] {
    ScriptStats sum;
    for (const auto& weak : generations_) {
      std::shared_ptr<WorkerGeneration> g = weak.lock();
      if (g == nullptr || g->scripts() == nullptr) continue;
      ScriptStats s = g->scripts()->stats();
      sum.coroutines += s.coroutines;
      sum.waiting += s.waiting;
      sum.timers += s.timers;
      sum.sockets += s.sockets;
      sum.memory_bytes += s.memory_bytes;
      sum.run_us += s.run_us;
      sum.memory_limit_hits += s.memory_limit_hits;
      sum.memory_limit = std::max(sum.memory_limit, s.memory_limit);
    }
    fn(sum);
  });
}

void Worker::closeGeneration(uint64_t id, std::function<void(int)> done) {
  loop_.post([this, id, done = std::move(done)] {
    // Collected first: abort() unlinks the session; deletion waits for the next loop turn,
    // so the pointers stay valid here (and abort() is a no-op on a finished session).
    std::vector<Session*> doomed;
    for (Session* s = sessions_; s != nullptr; s = s->next_session)
      if (s->generationId() == id) doomed.push_back(s);
    for (Session* s : doomed) s->abort();
    int n = static_cast<int>(doomed.size());
    if (done) done(n);
  });
}

void Worker::softStop() {
  loop_.post([this] {
    if (stopping_ || draining_) return;
    draining_ = true;
    closeListeners();
    for (Session* s = sessions_; s != nullptr;) {
      Session* next = s->next_session;
      s->drain();
      s = next;
    }
  });
}

void Worker::pauseListeners() {
  loop_.post([this] {
    if (stopping_ || draining_ || paused_) return;
    paused_ = true;
    closeListeners();
  });
}

void Worker::resumeListeners() {
  loop_.post([this] {
    if (stopping_ || draining_ || !paused_) return;
    paused_ = false;
    Status st = bindSockets(sockets_, current_);
    if (!st.ok()) logError("{}", st.message());
  });
}

void Worker::describeSessions(std::function<void(std::vector<std::string>)> fn) {
  loop_.post([this, fn = std::move(fn)] {
    std::vector<std::string> lines;
    for (Session* s = sessions_; s != nullptr; s = s->next_session)
      lines.push_back(fmt::format("worker={} {}", id_, s->describe()));
    fn(std::move(lines));
  });
}

void Worker::Bound::onListenerPending(Listener&) {
  worker->acceptFrom(*this);
}

void Worker::Bound::onListenerShortage(Listener&, int uv_error) {
  worker->onShortage(*this, uv_error);
}

void Worker::Bound::onListenerClosed(Listener&, int uv_error) {
  worker->onListenerLost(*this, uv_error);
}

std::string Worker::bindName(const Bound& b) {
  const Config& cfg = current_->config();
  if (b.frontend_index >= cfg.frontends.size()) return b.key;
  const FrontendConfig& fe = cfg.frontends[b.frontend_index];
  std::string bind = b.bind_index < fe.binds.size() ? fe.binds[b.bind_index].text : b.key;
  return fmt::format("frontend \"{}\": bind {}", fe.name, bind);
}

// A shortage paused the listener (it resumes by itself after Listener::kShortageRetryMs,
// or sooner when one of this worker's sessions ends). One line a second at most per
// listener, with the count of refusals since the previous line.
void Worker::onShortage(Bound& b, int uv_error) {
  accept_pauses_.fetch_add(1, std::memory_order_relaxed);
  ++b.refused_unlogged;
  // Idle server connections hold fds that the sessions already accepted need for their
  // own server connections (with http_reuse "safe", a client's first request never takes
  // an idle one): give them back (HAProxy too closes idle connections when fds run low).
  if (uv_error == UV_EMFILE || uv_error == UV_ENFILE) {
    b.idle_closed_unlogged += pool_->idleCount();
    pool_->clear();
  }
  uint64_t now = loop_.now();
  if (b.last_log_ms != 0 && now - b.last_log_ms < 1000) return;
  logWarning(
      "worker {}: {}: accept paused: {} ({} accept(s) refused, {} idle server connection(s) "
      "closed since the last line); connections wait in the kernel's queue; retry in {} ms "
      "or when a connection closes",
      id_, bindName(b), uv_strerror(uv_error), b.refused_unlogged, b.idle_closed_unlogged,
      Listener::kShortageRetryMs);
  b.last_log_ms = now == 0 ? 1 : now;
  b.refused_unlogged = 0;
  b.idle_closed_unlogged = 0;
}

// The socket can no longer accept. The Bound stays until the next install() or SIGTTIN,
// which polls a fresh dup of the process's socket (and a reload opens the bind again when
// that socket itself stopped listening, see Process::matchListeners).
void Worker::onListenerLost(Bound& b, int uv_error) {
  listeners_lost_.fetch_add(1, std::memory_order_relaxed);
  if (b.listener && b.listener->held()) counters_.paused.fetch_sub(1, std::memory_order_relaxed);
  logWarning(
      "worker {}: {}: listener closed: accept: {} (the socket no longer accepts; a reload "
      "or SIGTTIN opens it again)",
      id_, bindName(b), uv_strerror(uv_error));
}

bool Worker::atLimit(size_t frontend_index) {
  int maxconn = counters_.maxconn.load(std::memory_order_relaxed);
  if (maxconn > 0 && counters_.actconn.load(std::memory_order_relaxed) >= maxconn) return true;
  int fe_max = current_->config().frontends[frontend_index].maxconn;
  return fe_max > 0 &&
         current_->gen().frontendStats(frontend_index).cur.load(std::memory_order_relaxed) >=
             fe_max;
}

void Worker::acceptFrom(Bound& b) {
  Listener& l = *b.listener;
  if (uint64_t n = l.skipped(); n != b.skipped_seen) {
    accept_errors_.fetch_add(n - b.skipped_seen, std::memory_order_relaxed);
    b.skipped_seen = n;
  }
  if (stopping_ || draining_) return;
  if (atLimit(b.frontend_index)) {
    // Keep the connection and stop polling the socket until resumePaused() accepts it
    // (HAProxy's maxconn behaviour: clients wait in the kernel's queue, not refused).
    if (!l.held()) counters_.paused.fetch_add(1, std::memory_order_relaxed);
    l.hold();
    return;
  }
  if (l.held()) counters_.paused.fetch_sub(1, std::memory_order_relaxed);
  StreamPtr client = l.accept();
  if (!client) return;
  if (!l.unixSocket()) client->setNoDelay(true);
  startSession(*this, current_, b.frontend_index, b.bind_index, std::move(client));
}

// Held listeners accept when the limit allows; listeners paused for a shortage poll again
// at once (a session that ended gave its fds back) instead of waiting for their retry.
void Worker::resumePaused() {
  for (auto& b : bound_) {
    if (!b || !b->listener || b->listener->closed()) continue;
    if (b->listener->held() && !atLimit(b->frontend_index))
      acceptFrom(*b);
    else if (b->listener->shortPaused())
      b->listener->resume();
  }
}

void Worker::stop() {
  loop_.post([this] { hardStop(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::hardStop() {
  stopping_ = true;
  loop_.keepAlive(false);
  bound_.clear();                                   // closes the listeners
  while (sessions_ != nullptr) sessions_->abort();  // each unlinks itself
  if (pool_) pool_->clear();
  // Timers run their premature call and nothing the scripts started is left waiting.
  for (const auto& weak : generations_) {
    if (auto g = weak.lock(); g != nullptr && g->scripts() != nullptr) g->scripts()->retire(true);
  }
}

void Worker::addSession(Session* s) {
  if (draining_) s->drain();  // e.g. a handshake handing over after the soft stop began
  s->next_session = sessions_;
  if (sessions_) sessions_->prev_session = s;
  sessions_ = s;
  ++session_count_;
  counters_.actconn.fetch_add(1, std::memory_order_relaxed);
  counters_.cumconn.fetch_add(1, std::memory_order_relaxed);
}

void Worker::endSession(Session* s) {
  if (s->prev_session) s->prev_session->next_session = s->next_session;
  if (s->next_session) s->next_session->prev_session = s->prev_session;
  if (sessions_ == s) sessions_ = s->next_session;
  s->prev_session = s->next_session = nullptr;
  --session_count_;
  counters_.actconn.fetch_sub(1, std::memory_order_relaxed);
  loop_.deferDelete(std::unique_ptr<Deletable>(s));
  if (stopping_) return;
  resumePaused();
  // A listener of another worker may be waiting for the slot this session freed.
  if (counters_.paused.load(std::memory_order_relaxed) > 0 && counters_.wake_all)
    counters_.wake_all();
}

}  // namespace crescent::core
