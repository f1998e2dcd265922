#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/config/config.h"

namespace crescent::core {

class Backend;
class Balancer;
class Server;
class EventLoop;
class SourcePicker;

/// Milliseconds of a process-wide monotonic clock (steady_clock), comparable across
/// threads (uv_now() is per loop). Used for slowstart and state-change ages.
uint64_t monotonicMs();

/// What an operator set (runtime API / Lua): HAProxy's `set server b/s state`.
enum class AdminState : uint8_t {
  kReady,  ///< takes traffic
  kDrain,  ///< no new traffic; current sessions finish; health checks go on
  kMaint,  ///< no new traffic, not checked; current sessions finish
};

const char* adminStateName(AdminState s);

/// What a server keeps across reloads (DESIGN §3): health, admin state, counters and its
/// slot count. Shared by the Server objects of every live generation whose backend and
/// server names and address match, so old and new generations see one health state, one
/// set of counters, and one `cur`: maxconn (and leastconn) count the old generation's
/// tunnels too. All atomics, but `members`.
struct ServerShared {
  ServerShared();
  /// Connections/requests being served, every generation (Server::current()).
  std::atomic<int> cur{0};
  /// The Server objects sharing this state (one per live generation), so that a slot
  /// freed in one generation can go to a request queued in another. Guarded by `mu`; a
  /// Backend leaves (Server::detach) before any of its members is destroyed.
  std::mutex mu;
  std::vector<Server*> members;
  std::atomic<int> member_count{0};  // members.size(), read without the lock
  /// Identity of the server's connections (ConnectionPool key): one per ServerShared,
  /// never reused in the process, so pooled connections follow a server across reloads.
  const uint64_t pool_key;
  /// up = health_up && agent_up, changed under `state_mu` (Server::setUp/setAgentUp).
  std::atomic<bool> up{true};
  std::atomic<bool> health_up{true};  ///< what health checks and `observe` decided
  std::atomic<bool> agent_up{true};   ///< what the agent said ("up" / "down", "fail", ...)
  std::mutex state_mu;
  std::atomic<AdminState> admin{AdminState::kReady};
  std::atomic<uint64_t> up_since{0};  // monotonicMs() when it last came up (slowstart)
  std::atomic<uint64_t> last_change{0};
  std::atomic<uint64_t> total{0};
  std::atomic<uint64_t> econ{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> redispatches{0};
  std::atomic<uint64_t> chkfail{0};
  std::atomic<int> observed_errors{0};
  std::atomic<uint64_t> rtt_x16{0};  // response time EWMA in 1/16 ms, 0 = none yet
};

/// What a backend keeps across reloads when its name matches: its counters.
/// Upper bounds (ms) of the response time histogram's buckets; one more counts the rest.
inline constexpr uint64_t kResponseTimeBucketsMs[] = {5,   10,   25,   50,   100,  250,
                                                      500, 1000, 2500, 5000, 10000};
inline constexpr size_t kResponseTimeBuckets = std::size(kResponseTimeBucketsMs) + 1;

struct BackendShared {
  std::atomic<uint64_t> total{0};
  std::atomic<int> queued_max{0};
  std::atomic<uint64_t> queue_timeouts{0};
  /// Responses per response-time bucket (not cumulative; the last: above every bound).
  std::atomic<uint64_t> rt_buckets[kResponseTimeBuckets] = {};
  std::atomic<uint64_t> rt_sum_ms{0};
};

/// Runtime state of one configured server, shared by every worker of a generation.
///
/// Counters and states are atomics: balancing reads them without locks (relaxed; a stale
/// value costs one slightly worse pick, never correctness). The slot count `current()`
/// is exact: tryAcquire() never lets it pass maxconn, and every successful tryAcquire()
/// or acquire() is paired with one release(), which may hand the freed slot to a waiting
/// request (Backend's queues) on any worker.
class Server {
 public:
  /// `shared`: the state of the same server in the previous generation, or null (new).
  Server(Backend& backend, const ServerConfig& cfg, size_t index,
         std::shared_ptr<ServerShared> shared = nullptr);
  ~Server();

  const ServerConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  Backend& backend() const { return backend_; }
  /// Position in the backend (0-based); config().id is index() + 1.
  size_t index() const { return index_; }
  bool backup() const { return config_.backup; }

  // --- state --------------------------------------------------------------------------
  /// Health: up as decided by checks (active and observed) and not down by its agent
  /// (HAProxy: an agent cannot bring up a server its health check says is down, nor
  /// keep up one whose agent says down); true without checks.
  bool up() const { return sh_->up.load(std::memory_order_relaxed); }
  /// Health as the health checks and `observe` alone decided.
  bool healthUp() const { return sh_->health_up.load(std::memory_order_relaxed); }
  /// Health as the agent check alone decided (true without an agent).
  bool agentUp() const { return sh_->agent_up.load(std::memory_order_relaxed); }
  AdminState admin() const { return sh_->admin.load(std::memory_order_relaxed); }
  /// May take new traffic: up, admin ready and a weight above 0.
  bool usable() const { return up() && admin() == AdminState::kReady && weight() > 0; }
  /// usable() and a free slot.
  bool available() const { return usable() && !full(); }
  /// "UP", "DOWN", "DRAIN", "MAINT" (stats, logs, Lua `state`).
  const char* stateName() const;

  /// Sets the health (health checks, observe). When up() changes: logs it with `reason`,
  /// starts slowstart when coming up, wakes queued requests. Thread-safe; returns true if
  /// up() changed.
  bool setUp(bool up, const std::string& reason);
  /// Sets the agent's health (agent check: "up", "down"/"fail"/"stopped"); as setUp().
  bool setAgentUp(bool up, const std::string& reason);
  /// Sets the admin state; thread-safe; logs; returns true if changed.
  bool setAdmin(AdminState s, const std::string& why = "runtime");
  /// Sets the configured weight (0..256); thread-safe.
  void setWeight(int w);
  /// Sets maxconn (0 = unlimited); thread-safe; a raise wakes queued requests.
  void setMaxconn(int n);

  /// Weight as configured or set at runtime (0..256).
  int weight() const { return weight_.load(std::memory_order_relaxed); }
  /// Weight as balancing sees it at `now_ms` (monotonicMs): ramps from 1/slowstart of the
  /// weight to all of it over `slowstart` ms after the server came up (HAProxy rounds up,
  /// so a ramping server gets at least 1).
  int effectiveWeight(uint64_t now_ms) const;
  int maxconn() const { return maxconn_.load(std::memory_order_relaxed); }

  // --- slots ---------------------------------------------------------------------------
  /// Concurrent connections (TCP) or requests (HTTP) being served.
  int current() const { return sh_->cur.load(std::memory_order_relaxed); }
  /// True when maxconn is set and reached.
  bool full() const {
    int m = maxconn();
    return m > 0 && current() >= m;
  }
  /// Takes a slot if one is free (never passes maxconn). Thread-safe.
  bool tryAcquire();
  /// Takes a slot regardless of maxconn (a request already assigned elsewhere).
  void acquire();
  /// Gives a slot back; a request waiting for it (this server's queue, or the backend's)
  /// is dispatched to it. Thread-safe.
  void release();

  /// Requests waiting in this server's own queue (hash algorithms keep their server).
  int queued() const { return queued_.load(std::memory_order_relaxed); }

  // --- observations ----------------------------------------------------------------------
  /// Records a response time (ms from connect start to response head) into the average.
  void recordResponseTime(uint64_t ms);
  /// Exponentially weighted average response time in ms (weight 1/8 per sample), 0 until
  /// the first sample.
  double responseTimeMs() const;
  /// Passive check (HAProxy `observe`): one outcome seen by traffic, `layer7` for an
  /// HTTP response (5xx = error), else a connection (refused/timeout = error). With
  /// `observe = "layer4"` only connection outcomes count. After check.error_limit
  /// consecutive errors the server is marked down (health checks bring it back).
  void observe(bool ok, const char* what, bool layer7 = false);

  void countConnectError() { sh_->econ.fetch_add(1, std::memory_order_relaxed); }
  void countRetry() { sh_->retries.fetch_add(1, std::memory_order_relaxed); }
  void countRedispatch() { sh_->redispatches.fetch_add(1, std::memory_order_relaxed); }
  uint64_t total() const { return sh_->total.load(std::memory_order_relaxed); }
  uint64_t connectErrors() const { return sh_->econ.load(std::memory_order_relaxed); }
  uint64_t retries() const { return sh_->retries.load(std::memory_order_relaxed); }
  uint64_t redispatches() const { return sh_->redispatches.load(std::memory_order_relaxed); }
  uint64_t checkFailures() const { return sh_->chkfail.load(std::memory_order_relaxed); }
  void countCheckFailure() { sh_->chkfail.fetch_add(1, std::memory_order_relaxed); }
  /// monotonicMs() of the last up/down change (0: never changed).
  uint64_t lastChangeMs() const { return sh_->last_change.load(std::memory_order_relaxed); }

  /// Leaves ServerShared::members (the Backend's destructor, before anything goes).
  void detach();
  /// What survives a reload (see ServerShared); the next generation's Server adopts it.
  const std::shared_ptr<ServerShared>& shared() const { return sh_; }
  /// Key of this server's idle connections in a worker's ConnectionPool.
  uint64_t poolKey() const {
    uint64_t k = pool_key_.load(std::memory_order_relaxed);
    return k != 0 ? k : sh_->pool_key;
  }

  /// Where new connections and health checks go: the configured address, or the one the
  /// runtime API set (`set server B/S addr`) until the next reload. Thread-safe (a copy).
  Address address() const;
  /// Sets it (thread-safe). Connections already open stay; idle pooled ones to the old
  /// address are not reused (the server gets a new pool key).
  void setAddress(const Address& a);
  /// True once setAddress() was called (the address is no longer the configured one).
  bool addressChanged() const { return addr_set_.load(std::memory_order_acquire); }

  /// Local address chooser for connections to this server, or null (no `source`).
  SourcePicker* source() const { return source_.get(); }

 private:
  friend class Backend;
  // Sets health_up or agent_up, then up = both; logs and wakes when up changed.
  bool changeUp(std::atomic<bool>& part, bool value, const std::string& reason);
  Backend& backend_;
  const ServerConfig& config_;
  size_t index_;
  std::shared_ptr<ServerShared> sh_;
  std::atomic<int> weight_;
  mutable std::mutex addr_mu_;
  Address addr_;  // guarded by addr_mu_; used once addr_set_
  std::atomic<bool> addr_set_{false};
  std::atomic<uint64_t> pool_key_{0};  // 0: the shared one (ServerShared::pool_key)
  std::atomic<int> maxconn_;
  std::atomic<int> queued_{0};  // this server's queue length (written under backend mutex)
  std::unique_ptr<SourcePicker> source_;
};

/// A request waiting for a server slot (HAProxy's pendconn). Created by Backend::assign()
/// for the session that waits, shared with the queue. The session's thread owns `waiter`;
/// the queue's side (state, granted) is guarded by the backend's mutex.
struct QueueTicket {
  /// Told on the waiting session's own loop thread.
  class Waiter {
   public:
    virtual ~Waiter() = default;
    /// A slot of `server` is now held for the waiter (it must release() it).
    virtual void onQueueGranted(Server& server) = 0;
  };

  enum class State { kWaiting, kGranted, kCancelled };
  EventLoop* loop = nullptr;  ///< the waiter's loop (grants are posted to it)
  Waiter* waiter = nullptr;   ///< cleared by cancel(); touched on the waiter's thread only
  Server* target = nullptr;   ///< waiting for this server, or null: for any server
  uint64_t seq = 0;           ///< arrival order in the backend
  State state = State::kWaiting;
  /// Set by the waiter (on its thread): kept alive until the grant has run, e.g. the
  /// generation that owns `target`, so a grant arriving after the waiter left can still
  /// release its slot.
  std::shared_ptr<void> keepalive;
};
using QueueTicketPtr = std::shared_ptr<QueueTicket>;

/// Runtime state of one backend: its servers, counters, balancer and queues, shared by
/// the workers of a generation.
///
/// Queues (HAProxy's model, reference/002): a request whose server is chosen but full
/// waits in that server's queue (hash algorithms keep a key on its server); a request for
/// which every usable server is full waits in the backend's queue. A freed slot goes to
/// the oldest request of its server's queue or of the backend's queue. `maxqueue` bounds
/// a server's queue; the backend's queue is bounded by the sum of its usable servers'
/// maxqueue when every one of them sets one.
class Backend {
 public:
  /// `prev`: the backend of the same name in the previous generation, or null. Its
  /// counters, and the state of servers whose name and address match, carry over.
  Backend(const BackendConfig& cfg, size_t index, const Backend* prev = nullptr);
  ~Backend();
  const BackendConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  size_t index() const { return index_; }
  std::vector<std::unique_ptr<Server>>& servers() { return servers_; }
  Server* findServer(std::string_view name);
  /// The built-in balancer (the fallback of a Lua balancer). Thread-safe.
  Balancer& balancer() { return *balancer_; }

  /// Concurrent sessions using the backend.
  int current() const { return cur_.load(std::memory_order_relaxed); }
  void acquire() {
    cur_.fetch_add(1, std::memory_order_relaxed);
    sh_->total.fetch_add(1, std::memory_order_relaxed);
  }
  void release() { cur_.fetch_sub(1, std::memory_order_relaxed); }
  uint64_t total() const { return sh_->total.load(std::memory_order_relaxed); }

  /// Outcome of assign().
  struct Assignment {
    enum class Kind {
      kAcquired,   ///< `server`'s slot is held
      kQueued,     ///< wait for `ticket` to be granted (Waiter::onQueueGranted)
      kNoServer,   ///< no usable server: 503
      kQueueFull,  ///< maxqueue reached: 503
    };
    Kind kind = Kind::kNoServer;
    Server* server = nullptr;
    QueueTicketPtr ticket;
  };

  /// Takes a slot of `chosen` (a usable server, possibly full), or queues the request:
  /// on `chosen` when it is full, on the backend when `chosen` is null and some usable
  /// server exists (all full). `waiter` and `loop` receive the grant. Thread-safe.
  Assignment assign(Server* chosen, QueueTicket::Waiter& waiter, EventLoop& loop);
  /// The waiter gives up (timeout queue, client gone); call on the waiter's thread. A
  /// grant already on its way is released when it arrives. Thread-safe.
  void cancel(const QueueTicketPtr& ticket);

  /// Requests waiting in the backend's queue plus every server's.
  int queued() const { return waiting_.load(std::memory_order_relaxed); }
  /// Highest queued() seen (stats qmax).
  int queuedMax() const { return sh_->queued_max.load(std::memory_order_relaxed); }
  /// Counts one response time (ms from the request sent to the response head) in the
  /// backend's histogram. Lock-free; any thread.
  void recordResponseTime(uint64_t ms);
  /// The histogram's buckets (see kResponseTimeBucketsMs) and the sum of the times.
  uint64_t responseTimeBucket(size_t i) const {
    return sh_->rt_buckets[i].load(std::memory_order_relaxed);
  }
  uint64_t responseTimeSumMs() const { return sh_->rt_sum_ms.load(std::memory_order_relaxed); }
  /// Requests that timed out in a queue.
  uint64_t queueTimeouts() const { return sh_->queue_timeouts.load(std::memory_order_relaxed); }
  void countQueueTimeout() { sh_->queue_timeouts.fetch_add(1, std::memory_order_relaxed); }
  /// `clear counters` (HAProxy): the highest values seen restart from now (qmax); with
  /// `all`, the totals too, the backend's and its servers' (stot, econ, wretr, wredis,
  /// chkfail). Thread-safe; current values (scur, qcur) are not counters and stay.
  void clearCounters(bool all);

  /// Hands free slots to waiting requests (after a server came up, or maxconn/weight
  /// changed). Thread-safe.
  void dispatchAll();
  /// Tells the balancer that weights or states changed. Thread-safe.
  void serversChanged();
  /// Moves the requests waiting in `s`'s own queue to the backend's queue (in arrival
  /// order), for a server that can no longer take them (down, drain, maint). Thread-safe.
  void requeue(Server& s);

 private:
  friend class Server;
  void onSlotFreed(Server& s);
  // Under mu_: grants queued requests to free slots of `s` while both exist.
  void dispatchLocked(Server& s);
  void grantLocked(const QueueTicketPtr& t, Server& s);
  // Under mu_: drops cancelled tickets at the front of `q`.
  static void trim(std::deque<QueueTicketPtr>& q);
  bool anyUsable() const;

  const BackendConfig& config_;
  size_t index_;
  std::shared_ptr<BackendShared> sh_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::unique_ptr<Balancer> balancer_;
  std::atomic<int> cur_{0};
  std::atomic<int> waiting_{0};  // tickets in any queue, not cancelled

  std::mutex mu_;
  std::deque<QueueTicketPtr> queue_;                       // guarded by mu_
  std::vector<std::deque<QueueTicketPtr>> server_queues_;  // guarded by mu_, per server
  uint64_t seq_ = 0;                                       // guarded by mu_
  int64_t backend_queued_ = 0;  // guarded by mu_: waiting tickets in queue_ (maxqueue)
};

}  // namespace crescent::core
