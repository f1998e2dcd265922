#include "core/base/log.h"

#include <unistd.h>

#include <atomic>
#include <iterator>
#include <string>

#include "core/base/wall_clock.h"

namespace crescent::core {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};

void writeAll(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n <= 0) return;  // nothing sensible to do about a broken log stream
    s.remove_prefix(static_cast<size_t>(n));
  }
}

const char* levelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

}  // namespace

void setLogLevel(LogLevel level) {
  g_level.store(level, std::memory_order_relaxed);
}
LogLevel logLevel() {
  return g_level.load(std::memory_order_relaxed);
}

void logLine(LogLevel level, std::string_view line) {
  std::string out;
  out.reserve(line.size() + 64);
  appendDate(out, wallClockMs(), DateFormat::kIso8601Utc);
  fmt::format_to(std::back_inserter(out), " crescent[{}]: {}: {}\n", ::getpid(), levelName(level),
                 line);
  writeAll(STDERR_FILENO, out);
}

void logTraffic(std::string_view line) {
  std::string out;
  out.reserve(line.size() + 1);
  out.append(line);
  out.push_back('\n');
  writeAll(STDOUT_FILENO, out);
}

}  // namespace crescent::core
