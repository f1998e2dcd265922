#pragma once

#include <cstdint>
#include <string>

namespace crescent::core {

/// HAProxy's date format for log lines: "20/Nov/2026:22:34:00.123" (local time), from a
/// wall-clock time in milliseconds since the epoch.
std::string formatLogDate(uint64_t epoch_ms);

/// Wall-clock milliseconds since the epoch.
uint64_t wallClockMs();

/// Milliseconds between two loop times, or -1 when `to` never happened (0).
inline int64_t elapsedOrMinus(uint64_t from, uint64_t to) {
  return to == 0 ? -1 : static_cast<int64_t>(to >= from ? to - from : 0);
}

}  // namespace crescent::core
