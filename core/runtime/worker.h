#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "core/backend/connection_pool.h"
#include "core/base/running_slot.h"
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
  /// Calls `fn` on the worker's thread with its Lua states' counters, summed over every
  /// generation it still runs (show info). Thread-safe.
  void scriptStats(std::function<void(ScriptStats)> fn);
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
  /// Accept pauses for a shortage of fds, buffers or memory (each one an accept refused),
  /// and accept errors that concerned one connection and were skipped, since start; and
  /// listeners closed because their socket could no longer accept. Any thread (show info).
  uint64_t acceptPauses() const { return accept_pauses_.load(std::memory_order_relaxed); }
  uint64_t acceptErrors() const { return accept_errors_.load(std::memory_order_relaxed); }
  uint64_t listenersLost() const { return listeners_lost_.load(std::memory_order_relaxed); }
  /// What the worker's thread runs (Lua phase), for the watchdog. Thread-safe.
  const RunningSlot& runningSlot() const { return slot_; }
  /// The worker's thread (after start()), for the watchdog's pthread_kill.
  pthread_t nativeThread() { return thread_.native_handle(); }
  /// The worker's loop, for the watchdog's heartbeat (EventLoop::busySinceNs only).
  const EventLoop& watchedLoop() const { return loop_; }

  // WorkerContext (worker thread only)
  EventLoop& loop() override { return loop_; }
  int workerId() const override { return id_; }
  std::shared_ptr<WorkerGeneration> current() override { return current_; }
  ConnectionPool& pool() override { return *pool_; }
  ProcessCounters& counters() override { return counters_; }
  void addSession(Session* s) override;
  void endSession(Session* s) override;
  BuiltinService* builtinService() override { return builtin_; }
  /// Before start(): the service answering the admin listener (borrowed; outlives us).
  void setBuiltinService(BuiltinService* s) { builtin_ = s; }
  /// Id of the generation this worker accepts with; 0 before it starts. Any thread.
  const std::atomic<uint64_t>& servingGeneration() const { return serving_gen_; }

 private:
  // One listening socket this worker polls; the listener's handler.
  struct Bound final : ListenerHandler {
    Worker* worker = nullptr;
    size_t frontend_index = 0;
    size_t bind_index = 0;
    std::string key;
    uint64_t skipped_seen = 0;          // listener->skipped() already added to accept_errors_
    uint64_t refused_unlogged = 0;      // shortage refusals since the last pause line
    uint64_t idle_closed_unlogged = 0;  // idle server connections closed for them
    uint64_t last_log_ms = 0;           // loop time of the last pause line; 0: none yet
    ListenerPtr listener;               // last: the listener calls into the fields above
    void onListenerPending(Listener& l) override;
    void onListenerShortage(Listener& l, int uv_error) override;
    void onListenerClosed(Listener& l, int uv_error) override;
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
  void acceptFrom(Bound& b);
  void onShortage(Bound& b, int uv_error);
  void onListenerLost(Bound& b, int uv_error);
  // The frontend and bind a Bound serves, for log lines.
  std::string bindName(const Bound& b);
  bool atLimit(size_t frontend_index);
  void resumePaused();
  void hardStop();
  // The worker starts using `wg` (its Lua state binds to this loop); `prev` stops.
  void adopt(const std::shared_ptr<WorkerGeneration>& wg,
             const std::shared_ptr<WorkerGeneration>& prev);

  int id_;
  BuiltinService* builtin_ = nullptr;     // the admin service, owned by the process
  std::atomic<uint64_t> serving_gen_{0};  // current_'s id, for /readyz
  ProcessCounters& counters_;
  EventLoop loop_;
  std::unique_ptr<ConnectionPool> pool_;
  std::shared_ptr<WorkerGeneration> current_;
  // Every generation this worker ran, while something still holds it (stats).
  std::vector<std::weak_ptr<WorkerGeneration>> generations_;
  std::vector<std::unique_ptr<Bound>> bound_;
  Session* sessions_ = nullptr;  // intrusive list head
  size_t session_count_ = 0;
  bool stopping_ = false;
  bool draining_ = false;              // soft stop: listeners closed, sessions drain
  bool paused_ = false;                // SIGTTOU: listeners closed until resumeListeners()
  std::vector<ListenSocket> sockets_;  // what install() last gave (resume reopens them)
  std::atomic<uint64_t> accept_pauses_{0};
  std::atomic<uint64_t> accept_errors_{0};
  std::atomic<uint64_t> listeners_lost_{0};
  RunningSlot slot_;
  std::thread thread_;
};

}  // namespace crescent::core
