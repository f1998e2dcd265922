#pragma once

#include <cstdint>

#include "core/config/config.h"

namespace crescent::core {

/// File descriptors `cfg` may hold at once with `threads` workers (HAProxy's maxsock):
/// two per connection (the client's and the server's) for the process's connection limit,
/// one per listening socket and per worker polling it, one per server with health checks,
/// and kFdMargin for the rest (loops, the runtime API and its clients, logs, Lua sockets).
/// The connection limit is `global.maxconn`, else the sum of the frontends' `maxconn` when
/// every frontend has one. Returns 0 when there is no limit (nothing to size for).
uint64_t fdsNeeded(const Config& cfg, int threads);
inline constexpr uint64_t kFdMargin = 128;

/// What raiseFdLimit() found and did.
struct FdLimit {
  uint64_t needed = 0;  ///< what was asked (0: no limit configured)
  uint64_t before = 0;  ///< RLIMIT_NOFILE soft limit found
  uint64_t soft = 0;    ///< soft limit now
  uint64_t hard = 0;    ///< hard limit
  bool enough = true;   ///< soft >= needed
  int error = 0;        ///< errno of a failed setrlimit(), 0 otherwise
};

/// Raises the RLIMIT_NOFILE soft limit to `needed` fds, at most to the hard limit (an
/// unprivileged process cannot raise that). `needed` 0 (no connection limit: as many as
/// the system allows) raises it to the hard limit, at most kFdCeiling. Never lowers it.
/// Logs nothing: the caller logs (see Process::run).
FdLimit raiseFdLimit(uint64_t needed);
inline constexpr uint64_t kFdCeiling = 1 << 20;

}  // namespace crescent::core
