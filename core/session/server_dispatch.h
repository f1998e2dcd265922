#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend/balancer.h"
#include "core/backend/server.h"
#include "core/net/timer.h"
#include "core/session/generation.h"
#include "core/session/hooks.h"

namespace crescent::core {

/// Finds the server of one exchange (HTTP) or session (TCP) and takes its slot
/// (DESIGN §4 "balancer (maxconn, queue, ...)"):
///  1. the backend's Lua balancer, if any: pick(txn, servers, state) among the usable
///     servers with a free slot; nil, an error (logged with its traceback), or a server
///     that is not among them falls back to
///  2. the built-in algorithm (roundrobin for a Lua balancer);
///  3. the chosen server's slot (Server::tryAcquire), or a place in a queue (Backend::
///     assign) until a slot frees, `timeout queue` (default: `timeout connect`) expires
///     (503, termination "sQ"), or the owner gives up (destroying this object leaves the
///     queue at once).
/// Used on the owner's worker thread only.
class ServerDispatch : private QueueTicket::Waiter, private ScriptWaiter {
 public:
  enum class Outcome {
    kPending,    ///< a Lua pick waits: Owner::onDispatched() follows
    kAssigned,   ///< server() holds a slot for the owner
    kQueued,     ///< wait for Owner::onQueueGranted / onQueueTimeout
    kNoServer,   ///< no usable server
    kQueueFull,  ///< the queue is at maxqueue
  };

  class Owner {
   public:
    virtual ~Owner() = default;
    /// A start() that returned kPending (a Lua pick that waits) is decided: any other
    /// Outcome, with the same meaning as start()'s.
    virtual void onDispatched(Outcome outcome) = 0;
    /// A queued request got `server`'s slot (the owner now holds it).
    virtual void onQueueGranted(Server& server) = 0;
    /// `timeout queue` expired while queued.
    virtual void onQueueTimeout() = 0;
  };

  ServerDispatch(EventLoop& loop, std::shared_ptr<WorkerGeneration> wg, size_t backend_index,
                 Owner& owner);
  ~ServerDispatch() override;  ///< leaves the queue if still in it

  /// Chooses. A Lua balancer runs through `txn` (null: no Lua, the built-in algorithm
  /// decides). `req` is copied where needed. Call once per exchange.
  Outcome start(ScriptTxn* txn, const PickRequest& req);
  /// The server assigned synchronously (kAssigned), else null.
  Server* server() const { return server_; }
  bool queued() const { return ticket_ != nullptr; }
  /// Milliseconds spent in the queue (the log's Tw), 0 when never queued.
  uint64_t queueMs() const { return queue_ms_; }

 private:
  void onQueueGranted(Server& server) override;
  void onScriptDone() override;
  // After the Lua pick (or without one): the chosen server or the algorithm's choice.
  Outcome assign();
  static void onTimer(void* ctx);

  EventLoop& loop_;
  std::shared_ptr<WorkerGeneration> wg_;
  Backend& backend_;
  Owner& owner_;
  TimerPtr timer_;
  QueueTicketPtr ticket_;
  Server* server_ = nullptr;
  ScriptTxn* txn_ = nullptr;   // while a Lua pick waits (cancelled if we go first)
  PickRequest pick_;           // kept while a Lua pick waits
  PickResult lua_;             // the Lua pick's result
  std::vector<Server*> cand_;  // the servers offered to the Lua pick
  uint64_t queued_at_ = 0;
  uint64_t queue_ms_ = 0;
};

}  // namespace crescent::core
