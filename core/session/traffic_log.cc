#include "core/session/traffic_log.h"

#include <fmt/format.h>
#include <sys/time.h>

#include <ctime>

namespace crescent::core {

std::string formatLogDate(uint64_t epoch_ms) {
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t secs = static_cast<time_t>(epoch_ms / 1000);
  struct tm tm {};
  localtime_r(&secs, &tm);
  return fmt::format("{:02}/{}/{:04}:{:02}:{:02}:{:02}.{:03}", tm.tm_mday, kMonths[tm.tm_mon],
                     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, epoch_ms % 1000);
}

uint64_t wallClockMs() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}

}  // namespace crescent::core
