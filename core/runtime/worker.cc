#include "core/runtime/worker.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include "core/base/log.h"
#include "core/session/handshake.h"

namespace crescent::core {

Worker::Worker(int id, ProcessCounters& counters, ScriptRunnerFactory factory)
    : id_(id), counters_(counters), factory_(std::move(factory)) {}

Worker::~Worker() {
  join();
}

Status Worker::start(std::shared_ptr<Generation> gen, const std::vector<ListenSocket>& sockets) {
  std::promise<Status> ready;
  auto fut = ready.get_future();
  thread_ = std::thread([this, gen, sockets, &ready]() mutable {
    Status st = setUp(std::move(gen), sockets);
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

Status Worker::setUp(std::shared_ptr<Generation> gen, const std::vector<ListenSocket>& sockets) {
  BufferPool::local(gen->config().global.bufsize);
  pool_ = std::make_unique<ConnectionPool>(loop_);
  std::unique_ptr<ScriptRunner> runner;
  if (factory_) {
    auto r = factory_();
    if (!r.ok()) return Status::error("worker " + std::to_string(id_) + ": " + r.message());
    runner = std::move(*r);
  }
  current_ = std::make_shared<WorkerGeneration>(std::move(gen), std::move(runner));
  const Config& cfg = current_->config();
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
  for (const auto& s : sockets) {
    // `bind { ..., threads = { 2 } }`: only those workers poll this socket.
    const std::vector<int>& only = cfg.frontends[s.frontend_index].binds[s.bind_index].threads;
    if (!only.empty() && std::find(only.begin(), only.end(), id_) == only.end()) continue;
    int fd = ::dup(s.fd);
    if (fd < 0) return Status::error("worker: dup of a listening socket failed");
    auto b = std::make_unique<Bound>();
    b->worker = this;
    b->frontend_index = s.frontend_index;
    b->bind_index = s.bind_index;
    auto l = Listener::open(loop_, fd, s.unix_socket, &Worker::onPending, b.get());
    if (!l.ok()) return Status::error(s.address.toString() + ": " + l.message());
    b->listener = std::move(*l);
    bound_.push_back(std::move(b));
  }
  return Status();
}

void Worker::onPending(void* ctx, Listener& l) {
  auto* b = static_cast<Bound*>(ctx);
  b->worker->acceptFrom(l, b->frontend_index, b->bind_index);
}

bool Worker::atLimit(size_t frontend_index) {
  if (counters_.maxconn > 0 &&
      counters_.actconn.load(std::memory_order_relaxed) >= counters_.maxconn)
    return true;
  int fe_max = current_->config().frontends[frontend_index].maxconn;
  return fe_max > 0 &&
         current_->gen().frontendStats(frontend_index).cur.load(std::memory_order_relaxed) >=
             fe_max;
}

void Worker::acceptFrom(Listener& l, size_t frontend_index, size_t bind_index) {
  if (stopping_) return;
  if (atLimit(frontend_index)) {
    // Leave the connection in the kernel's queue; libuv stops polling this socket until
    // resumePaused() accepts it (HAProxy's maxconn behaviour: clients wait, not refused).
    if (!l.paused()) counters_.paused.fetch_add(1, std::memory_order_relaxed);
    l.setPaused();
    return;
  }
  if (l.paused()) counters_.paused.fetch_sub(1, std::memory_order_relaxed);
  StreamPtr client = l.accept();
  if (!client) return;
  if (!l.unixSocket()) client->setNoDelay(true);
  startSession(*this, current_, frontend_index, bind_index, std::move(client));
}

void Worker::resumePaused() {
  for (auto& b : bound_) {
    if (b->listener->paused() && !atLimit(b->frontend_index))
      acceptFrom(*b->listener, b->frontend_index, b->bind_index);
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
  bound_.clear();                                   // closes the listeners
  while (sessions_ != nullptr) sessions_->abort();  // each unlinks itself
  if (pool_) pool_->clear();
}

void Worker::addSession(Session* s) {
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
