#pragma once

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "core/backend/connection_pool.h"
#include "core/base/status.h"
#include "core/net/event_loop.h"
#include "core/net/listener.h"
#include "core/session/worker_context.h"

namespace crescent::core {

/// A listening socket opened by the main thread, and the frontend it belongs to.
struct ListenSocket {
  int fd = -1;
  size_t frontend_index = 0;
  size_t bind_index = 0;  ///< into the frontend's binds
  bool unix_socket = false;
  Address address;  ///< as bound (port 0 resolved)
  /// Identity across reloads and binary upgrades: the bind's address as configured, plus
  /// "#n" for its n-th repetition. A reload keeps the socket of a key it still has.
  std::string key;
};

/// One worker thread (DESIGN §2): its own loop, sessions, buffer pool and idle server
/// connections, and its own Lua state per generation. The public methods other than the
/// constructor are called from the main thread; they hand work to the worker's loop.
class Worker final : public WorkerContext {
 public:
  Worker(int id, ProcessCounters& counters);
  ~Worker() override;

  /// Starts the thread on generation `wg` (built by the main thread, for this worker)
  /// and polls a dup of each listening socket meant for this worker. Returns once the
  /// worker is ready, or with its error.
  Status start(std::shared_ptr<WorkerGeneration> wg, const std::vector<ListenSocket>& sockets);
  /// Reload (DESIGN §3): new sessions, and the next request of keep-alive connections,
  /// use `wg` from the next loop turn; idle keep-alive connections move to it at once.
  /// Listeners become `sockets`: one whose key is kept keeps polling (its queue is never
  /// closed), a new one starts, one no longer listed stops accepting while its sessions
  /// live on. The fds stay the caller's (the worker polls dups). Thread-safe.
  void install(std::shared_ptr<WorkerGeneration> wg, std::vector<ListenSocket> sockets);
  /// Closes the sessions still on generation `id` (hard_stop_after, max_generations),
  /// then calls `done(count)` on the worker's thread. Thread-safe.
  void closeGeneration(uint64_t id, std::function<void(int)> done);
  /// Soft stop: stops accepting (the listening sockets stay open in the process) and
  /// drains every session (Session::drain()). Thread-safe.
  void softStop();
  /// SIGTTOU / SIGTTIN: stop polling the listening sockets (connections wait in the
  /// kernel's queue) / poll them again. Thread-safe.
  void pauseListeners();
  void resumeListeners();
  /// Calls `fn` on the worker's thread, with its sessions' describe() lines. Thread-safe.
  void describeSessions(std::function<void(std::vector<std::string>)> fn);
  /// Hard stop: closes listeners, aborts every session, lets the loop end. Thread-safe.
  void stop();
  /// Asks the worker to accept connections its listeners held back at a limit, if the
  /// limit allows now. Thread-safe.
  void wake() {
    loop_.post([this] {
      if (!stopping_) resumePaused();
    });
  }
  /// Waits for the thread to finish.
  void join();

  // WorkerContext (worker thread only)
  EventLoop& loop() override { return loop_; }
  int workerId() const override { return id_; }
  std::shared_ptr<WorkerGeneration> current() override { return current_; }
  ConnectionPool& pool() override { return *pool_; }
  ProcessCounters& counters() override { return counters_; }
  void addSession(Session* s) override;
  void endSession(Session* s) override;

 private:
  struct Bound {
    Worker* worker;
    size_t frontend_index;
    size_t bind_index;
    std::string key;
    ListenerPtr listener;
  };
  Status setUp(std::shared_ptr<WorkerGeneration> wg, const std::vector<ListenSocket>& sockets);
  // Polls `sockets` meant for this worker (indices into current_'s config), keeping the
  // listeners it already has by key; closes the others (their indices are `prev`'s).
  Status bindSockets(const std::vector<ListenSocket>& sockets,
                     const std::shared_ptr<WorkerGeneration>& prev);
  // Serves the connection a paused listener holds (libuv keeps one accepted fd) on `gen`,
  // the generation of the listener's indices, then closes the listener.
  void closeListener(Bound& b, const std::shared_ptr<WorkerGeneration>& gen);
  // Closes every listener (soft stop, SIGTTOU); the sockets stay open in the process.
  void closeListeners();
  static void onPending(void* ctx, Listener& l);
  void acceptFrom(Listener& l, size_t frontend_index, size_t bind_index);
  bool atLimit(size_t frontend_index);
  void resumePaused();
  void hardStop();

  int id_;
  ProcessCounters& counters_;
  EventLoop loop_;
  std::unique_ptr<ConnectionPool> pool_;
  std::shared_ptr<WorkerGeneration> current_;
  std::vector<std::unique_ptr<Bound>> bound_;
  Session* sessions_ = nullptr;  // intrusive list head
  size_t session_count_ = 0;
  bool stopping_ = false;
  bool draining_ = false;              // soft stop: listeners closed, sessions drain
  bool paused_ = false;                // SIGTTOU: listeners closed until resumeListeners()
  std::vector<ListenSocket> sockets_;  // what install() last gave (resume reopens them)
  std::thread thread_;
};

}  // namespace crescent::core
