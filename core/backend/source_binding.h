#pragma once

// Source address binding for connections to servers (`source = ...`), against local
// port exhaustion (reference/002_…; docs/port-exhaustion.md).

#include <atomic>
#include <cstdint>

#include "core/config/config.h"
#include "core/net/address.h"

namespace crescent::core {

/// Chooses the local address of each new connection to one server: the configured
/// addresses in turn and, with a port range, the ports of the range in turn (per address).
/// One instance per server, shared by the workers: next() is thread-safe and lock-free.
class SourcePicker {
 public:
  /// `cfg` must not be empty and must outlive the picker.
  explicit SourcePicker(const SourceConfig& cfg);

  struct Choice {
    Address local;  ///< port 0 when no range is configured
    /// True without a port range: bind with IP_BIND_ADDRESS_NO_PORT so the kernel picks
    /// the port at connect() time for the full 4-tuple, not at bind() for the address.
    bool no_port = true;
  };

  /// The next local address to bind. Thread-safe. The n-th call (from 0, over all
  /// workers) returns addresses[n % A] and, with a range, port
  /// port_min + (n / A) % (port_max - port_min + 1): the addresses turn fastest, so
  /// consecutive connections spread over the addresses, and every (address, port) pair
  /// comes once per choices() calls.
  Choice next();
  /// How many distinct (address, port) choices exist: the number of bind attempts after
  /// which a caller should give up when every one failed with EADDRINUSE/EADDRNOTAVAIL.
  size_t choices() const;

 private:
  const SourceConfig& cfg_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace crescent::core
