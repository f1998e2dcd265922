#pragma once

// Built-in balancing algorithms (HAProxy's `balance` keyword; reference/README.md).

#include <cstdint>
#include <memory>
#include <string_view>

#include "core/backend/server.h"
#include "core/net/address.h"

namespace crescent::core {

class HttpHead;

/// What an algorithm may look at. Borrowed for the call.
struct PickRequest {
  const Address* src = nullptr;     ///< client address (`source`)
  std::string_view path;            ///< request path without the query (`uri`)
  std::string_view query;           ///< query string without '?' (`url_param`)
  const HttpHead* head = nullptr;   ///< request head (`hdr`); null in TCP mode
  const Server* exclude = nullptr;  ///< redispatch: avoided unless it is the only choice
  uint64_t now_ms = 0;              ///< monotonicMs(), for slowstart
};

/// A backend's balancing algorithm. One instance per backend, shared by the workers
/// (HAProxy shares its LB trees between threads): pick() is thread-safe.
///
/// pick() returns a server that may take new traffic (Server::usable()), non-backup
/// servers first and backup servers only when no non-backup server is usable. For
/// algorithms without affinity (roundrobin, static-rr, leastconn, first, random) the
/// server also has a free slot: null then means "every usable server is full, wait in
/// the backend's queue" when Backend has usable servers, or "no server". Hash algorithms
/// keep a key on its server even when that server is full (the request waits in the
/// server's queue); when the key is missing (no such header) they balance roundrobin.
class Balancer {
 public:
  virtual ~Balancer() = default;
  virtual Server* pick(const PickRequest& req) = 0;
  /// Weights or states changed (rebuild what depends on them). Thread-safe.
  virtual void update() {}
  /// Whether a hash decides the server (then pick() may return a full server).
  virtual bool affinity() const { return false; }
};

/// Creates the algorithm named by `backend.config().algo` (and hash_type).
std::unique_ptr<Balancer> makeBalancer(Backend& backend);

/// The 64-bit hash used by the hash algorithms and `crescent.hash` in Lua (FNV-1a
/// followed by a 64-bit avalanche mix so that nearby keys spread evenly).
uint64_t hashKey(std::string_view key);

/// The servers an algorithm chooses among: usable non-backup servers, or usable backups
/// when there is none. Appends to `out` (cleared first); returns true if they are backups.
bool usableServers(Backend& backend, std::vector<Server*>& out);

}  // namespace crescent::core
