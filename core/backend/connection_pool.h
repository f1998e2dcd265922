#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/net/stream.h"
#include "core/net/timer.h"

namespace crescent::core {

class Server;

/// Idle keep-alive connections to servers, per worker thread (DESIGN §2): an HTTP
/// exchange that ends cleanly gives its server connection back; the next exchange to the
/// same server takes it instead of connecting. An idle connection that the server closes
/// (or that sends anything) is dropped; one idle longer than the idle timeout is closed.
/// Not thread-safe. Keys are Server::poolKey(): a server that a reload keeps (same name,
/// address and transport) keeps its key, so its idle connections serve the next
/// generation; a changed or removed server's connections are never taken again and idle
/// out. Keys are never reused within the process.
class ConnectionPool : private StreamHandler {
 public:
  explicit ConnectionPool(EventLoop& loop, size_t max_idle_per_server = 64,
                          uint64_t idle_timeout_ms = 10000);
  ~ConnectionPool() override;

  /// An idle connection to the server of `key`, or a null StreamPtr. The caller becomes its owner
  /// and must set its handler before returning to the loop (the stream is still reading).
  StreamPtr take(uint64_t key);
  /// Keeps `stream` (connected to the server of `key`, nothing pending in either direction)
  /// for `idle_ms` (the backend's pool.idle_timeout, or less when the server announced a
  /// shorter Keep-Alive timeout), among at most `max_idle` for that key (0: not kept).
  void give(uint64_t key, StreamPtr stream, uint64_t idle_ms, size_t max_idle);
  /// Closes every idle connection (worker stop).
  void clear();
  size_t idleCount() const;

 private:
  struct Idle {
    uint64_t key;
    StreamPtr stream;
    uint64_t expires;  // loop time
  };
  void onStreamData(Stream& s, Buffer data) override;
  void onStreamEof(Stream& s) override;
  void onStreamError(Stream& s, int err) override;
  void drop(Stream& s);
  static void onTimer(void* ctx);

  EventLoop& loop_;
  size_t max_idle_;
  uint64_t idle_timeout_;
  std::unordered_map<uint64_t, std::vector<Idle>> idle_;
  TimerPtr timer_;
};

}  // namespace crescent::core
