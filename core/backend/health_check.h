#pragma once

// Active health checks (reference/004_…; HAProxy's `check`, `inter`, `fastinter`,
// `downinter`, `rise`, `fall`, `http-check`). See docs/config.md "Health checks".

#include <memory>
#include <thread>
#include <vector>

#include "core/backend/check_script.h"
#include "core/backend/server.h"

namespace crescent::core {

/// Checks every server whose ServerConfig::check.enabled is set, on one thread of its
/// own with its own libuv loop, and sets Server::setUp() (atomic, read by the workers)
/// after `rise` consecutive successes / `fall` consecutive failures, logging each
/// change with its reason ("Layer4 connection problem: connection refused",
/// "Layer7 wrong status: 503", ...).
///
/// Checks of a backend are spread over the interval (server i of n starts i*inter/n ms
/// after start). Intervals: `inter` while up, `fastinter` while a transition is in
/// progress, `downinter` while down. A check connection is closed with FIN, never RST:
/// unread input is drained with recv(MSG_TRUNC) before close.
/// Servers in admin state maint are not checked.
class HealthChecker {
 public:
  /// `backends` must outlive the checker. `script` (may be null when no check uses a
  /// Lua expect) is used on the checker thread only. `connect_timeout` per backend is
  /// taken from its config (timeout.connect) when check.timeout is 0.
  HealthChecker(std::vector<Backend*> backends, std::unique_ptr<CheckScript> script);
  ~HealthChecker();  ///< stops and joins
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  /// True when at least one server has checks enabled (else start() is not needed).
  static bool wanted(const std::vector<Backend*>& backends);
  /// Starts the thread. Call once.
  void start();
  /// Stops the thread and closes every check connection; idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crescent::core
