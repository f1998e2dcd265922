#pragma once

#include <cstdint>
#include <string>

namespace crescent::core {

/// Wall-clock milliseconds since the epoch (gettimeofday: it may jump with the system
/// clock; durations use the loop's monotonic time instead).
uint64_t wallClockMs();

/// How a log line writes its date.
enum class DateFormat {
  /// "20/Nov/2026:22:34:00.123", local time: HAProxy's httplog/tcplog date
  /// (HAProxy configuration manual, 8.2.3 "HTTP log format", field `date`).
  kHaproxy,
  /// "2026-11-20T21:34:00.123Z", UTC with milliseconds: ISO 8601 (RFC 3339 section 5.6).
  kIso8601Utc,
};

/// Appends `epoch_ms` (milliseconds since the epoch) to `out`, written in `format`.
/// Thread-safe and lock-free on the common path: each thread keeps the text of the last
/// second it wrote in each format, so a line costs no localtime_r/gmtime_r call (the
/// former takes a lock and may read the zone file).
void appendDate(std::string& out, uint64_t epoch_ms, DateFormat format);

}  // namespace crescent::core
