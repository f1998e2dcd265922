#include "core/runtime/fd_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>

namespace crescent::core {

uint64_t fdsNeeded(const Config& cfg, int threads) {
  uint64_t conns = cfg.global.maxconn > 0 ? static_cast<uint64_t>(cfg.global.maxconn) : 0;
  if (conns == 0) {
    for (const FrontendConfig& fe : cfg.frontends) {
      if (fe.maxconn <= 0) return 0;  // one frontend without a limit: no limit
      conns += static_cast<uint64_t>(fe.maxconn);
    }
    if (conns == 0) return 0;
  }
  uint64_t listeners = 0;
  for (const FrontendConfig& fe : cfg.frontends) listeners += fe.binds.size();
  uint64_t checks = 0;
  for (const BackendConfig& be : cfg.backends)
    for (const ServerConfig& s : be.servers)
      if (s.check.enabled) ++checks;
  uint64_t workers = threads > 0 ? static_cast<uint64_t>(threads) : 1;
  return 2 * conns + listeners * (workers + 1) + checks + kFdMargin;
}

FdLimit raiseFdLimit(uint64_t needed) {
  FdLimit r;
  r.needed = needed;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    r.error = errno;
    return r;
  }
  r.before = r.soft = rl.rlim_cur;
  r.hard = rl.rlim_max;
  uint64_t want = needed > 0 ? needed : std::min<uint64_t>(r.hard, kFdCeiling);
  uint64_t target = std::min<uint64_t>(want, r.hard);
  if (target > r.soft) {
    rl.rlim_cur = target;
    if (::setrlimit(RLIMIT_NOFILE, &rl) == 0)
      r.soft = target;
    else
      r.error = errno;
  }
  r.enough = needed == 0 || r.soft >= needed;
  return r;
}

}  // namespace crescent::core
