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
};

/// Makes the ScriptRunner of one worker for the current config (evaluates the script in
/// a fresh Lua state). Called on the worker's own thread.
using ScriptRunnerFactory = std::function<Result<std::unique_ptr<ScriptRunner>>()>;

/// One worker thread (DESIGN §2): its own loop, sessions, buffer pool and idle server
/// connections, and its own Lua state per generation. The public methods other than the
/// constructor are called from the main thread; they hand work to the worker's loop.
class Worker final : public WorkerContext {
 public:
  Worker(int id, ProcessCounters& counters, ScriptRunnerFactory factory);
  ~Worker() override;

  /// Starts the thread: builds the worker's generation state, polls a dup of each
  /// listening socket. Returns once the worker is ready, or with its error.
  Status start(std::shared_ptr<Generation> gen, const std::vector<ListenSocket>& sockets);
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
    ListenerPtr listener;
  };
  Status setUp(std::shared_ptr<Generation> gen, const std::vector<ListenSocket>& sockets);
  void threadMain(std::shared_ptr<Generation> gen, std::vector<ListenSocket> sockets);
  static void onPending(void* ctx, Listener& l);
  void acceptFrom(Listener& l, size_t frontend_index, size_t bind_index);
  bool atLimit(size_t frontend_index);
  void resumePaused();
  void hardStop();

  int id_;
  ProcessCounters& counters_;
  ScriptRunnerFactory factory_;
  EventLoop loop_;
  std::unique_ptr<ConnectionPool> pool_;
  std::shared_ptr<WorkerGeneration> current_;
  std::vector<std::unique_ptr<Bound>> bound_;
  Session* sessions_ = nullptr;  // intrusive list head
  size_t session_count_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace crescent::core
