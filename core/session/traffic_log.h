#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/wall_clock.h"  // wallClockMs(), appendDate()
#include "core/net/address.h"

namespace crescent::core {

/// HAProxy's date format for log lines: "20/Nov/2026:22:34:00.123" (local time), from a
/// wall-clock time in milliseconds since the epoch.
std::string formatLogDate(uint64_t epoch_ms);
/// Appends formatLogDate(epoch_ms) to `out` without a temporary (once per log line):
/// appendDate() with DateFormat::kHaproxy.
void appendLogDate(std::string& out, uint64_t epoch_ms);

/// The fields of one HAProxy `httplog` line (reference/README.md), in its order. Times in
/// ms, -1 for a step not reached.
struct HttpLogLine {
  const Address* src = nullptr;
  uint64_t date_ms = 0;  ///< wall clock of the request's first byte
  std::string_view frontend, backend, server;
  int64_t tq = -1, tw = -1, tc = -1, tr = -1;
  uint64_t ta = 0;
  int status = -1;
  uint64_t bytes = 0;
  std::string_view term;  ///< the termination state, padded to 4 flags with '-'
  int actconn = 0, feconn = 0, beconn = 0, srv_conn = 0, retries = 0;
  int srv_queue = 0, be_queue = 0;
  std::string_view request;  ///< "GET / HTTP/1.1"; empty: "<BADREQ>"
};

/// Formats `l` as one httplog line (no newline):
/// `ip:port [date] fe be/srv Tq/Tw/Tc/Tr/Ta status bytes - - TERM act/fe/be/srv/retries
/// srvq/beq "request"`.
std::string formatHttpLog(const HttpLogLine& l);

/// Milliseconds between two loop times, or -1 when `to` never happened (0).
inline int64_t elapsedOrMinus(uint64_t from, uint64_t to) {
  return to == 0 ? -1 : static_cast<int64_t>(to >= from ? to - from : 0);
}

}  // namespace crescent::core
