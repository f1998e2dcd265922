#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/net/event_loop.h"
#include "core/session/generation.h"

namespace crescent::core {

class BuiltinService;
class ConnectionPool;

/// A live client connection's life (HAProxy's "session"): TCP or HTTP. Sessions are
/// linked into their worker's list so a hard stop can reach them all.
class Session : public Deletable {
 public:
  /// Hard stop: close both sides now, log the session as aborted. May be called from
  /// any of the worker's callbacks except the session's own; the session removes itself.
  virtual void abort() = 0;
  /// Id of the generation the session runs on now (hard_stop_after and max_generations
  /// close an old generation's sessions; `show sess`).
  virtual uint64_t generationId() const = 0;
  /// A reload installed a newer generation (WorkerContext::current()): a session idle
  /// between two requests moves to it now, so that nothing idle holds an old generation.
  virtual void onNewGeneration() {}
  /// Soft stop (SIGUSR1, binary upgrade): what is in flight finishes; an HTTP connection
  /// serves no request after the current one or the next one (answered with
  /// `Connection: close`); a tunnel runs to its end.
  virtual void drain() {}
  /// One `show sess` line, without the newline.
  virtual std::string describe() const = 0;

  Session* prev_session = nullptr;  // worker's intrusive list, owned by the worker
  Session* next_session = nullptr;
};

/// Process-wide counters (HAProxy's actconn and global maxconn).
struct ProcessCounters {
  std::atomic<int> actconn{0};
  std::atomic<uint64_t> cumconn{0};
  std::atomic<int> maxconn{0};  ///< 0 = unlimited; a reload may change it
  /// Listeners holding a connection back because a limit was reached, all workers.
  std::atomic<int> paused{0};
  /// Set by the process: asks every worker to retry its paused listeners (thread-safe).
  std::function<void()> wake_all;
};

/// What a session needs from the worker thread that owns it. Implemented by
/// runtime/Worker; everything here is used on the worker's thread only.
class WorkerContext {
 public:
  virtual ~WorkerContext() = default;
  virtual EventLoop& loop() = 0;
  virtual int workerId() const = 0;
  /// The newest generation on this worker: a keep-alive connection's next request uses it.
  virtual std::shared_ptr<WorkerGeneration> current() = 0;
  virtual ConnectionPool& pool() = 0;
  virtual ProcessCounters& counters() = 0;
  /// Links a new session; the worker may abort() it at stop.
  virtual void addSession(Session* s) = 0;
  /// Unlinks a finished session and defers its deletion to the next loop turn. Call
  /// once, as the session's last act (it is freed later, never inside this call).
  virtual void endSession(Session* s) = 0;
  /// The service that answers the admin listener's requests (stats, metrics, health), or
  /// null when the process offers none. Thread-safe; outlives the worker's sessions.
  virtual BuiltinService* builtinService() { return nullptr; }
};

}  // namespace crescent::core
