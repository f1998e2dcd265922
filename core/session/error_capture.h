#pragma once

// The last invalid request of each frontend and the last invalid response of each
// backend, as HAProxy keeps them for `show errors`: when, from where, why, the byte
// offset of the fault and the bytes around it.

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace crescent::core {

struct CapturedError {
  uint64_t event = 0;     ///< process-wide event number (0, 1, ...)
  uint64_t date_ms = 0;   ///< wall clock, ms since the epoch
  bool request = true;    ///< an invalid request (frontend) or response (backend)
  std::string proxy;      ///< the frontend (request) or backend (response) name
  std::string server;     ///< response: the server's name; request: empty
  std::string source;     ///< request: the client's address; response: the server's
  std::string reason;     ///< the parser's words ("bare LF in head")
  int status = 0;         ///< what crescent answered (400, 501, 502)
  size_t length = 0;      ///< bytes of the message that were looked at
  size_t offset = 0;      ///< where the fault is, in the message
  size_t excerpt_at = 0;  ///< offset of the excerpt's first byte in the message
  std::string excerpt;    ///< up to kExcerpt bytes of the message around `offset`
};

/// The captures of the process: one slot per (kind, proxy name), the latest wins, kept
/// across reloads (a frontend's captures stay with its name). Thread-safe: workers
/// capture, the runtime API reads and clears.
class ErrorCaptures {
 public:
  /// Bytes kept of a message: this much before the fault and as much after.
  static constexpr size_t kExcerpt = 512;

  static ErrorCaptures& process();

  /// Records the error of `message` (the bytes parsed, borrowed for the call) at `offset`
  /// (clamped to the message); fills length, excerpt, event and date_ms of `e`.
  void capture(CapturedError e, std::string_view message, size_t offset);
  /// The captures, oldest first; `kind`: "" (all), "frontend" or "backend"; `proxy`
  /// (when not empty): only that proxy's.
  std::vector<CapturedError> snapshot(std::string_view kind, std::string_view proxy) const;
  /// Events captured since start (or the last clear()).
  uint64_t total() const;
  void clear();

 private:
  mutable std::mutex mu_;
  std::vector<CapturedError> slots_;
  uint64_t events_ = 0;
};

/// HAProxy's `show errors` text for `captures` (no empty line: one ends a runtime reply):
/// a line per error with date, proxy and reason, the peer and the position of the fault,
/// then the excerpt as offset-prefixed lines, non-printable bytes escaped (\r, \n, \xHH).
std::string formatErrors(const std::vector<CapturedError>& captures, uint64_t total);

}  // namespace crescent::core
