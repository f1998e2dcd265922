#pragma once

#include <fmt/format.h>

#include <string_view>

namespace crescent::core {

/// Severity of a diagnostic line. Traffic logs (httplog/tcplog) are written with
/// logTraffic() and are not filtered by level.
enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

/// Where and what to log. Process-wide; set once at startup before workers start
/// (and again only from the main thread while no worker logs, e.g. never at runtime).
void setLogLevel(LogLevel level);
LogLevel logLevel();

/// Writes one line (a '\n' is appended) to stderr for diagnostics:
///   `2026-12-08T01:02:03.456Z crescent[PID]: LEVEL: line`
/// the wall-clock date in UTC (ISO 8601, milliseconds), the process id and the level
/// (debug, info, warning, error). Thread-safe: a line is written with a single write(2),
/// so lines from several threads never interleave. Never fails loudly: a short write is
/// dropped.
void logLine(LogLevel level, std::string_view line);

/// Writes one traffic log line (httplog/tcplog) to stdout, with a single write(2).
void logTraffic(std::string_view line);

template <class... Args>
void logInfo(fmt::format_string<Args...> f, Args&&... args) {
  if (logLevel() <= LogLevel::kInfo)
    logLine(LogLevel::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void logWarning(fmt::format_string<Args...> f, Args&&... args) {
  if (logLevel() <= LogLevel::kWarning)
    logLine(LogLevel::kWarning, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void logError(fmt::format_string<Args...> f, Args&&... args) {
  logLine(LogLevel::kError, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void logDebug(fmt::format_string<Args...> f, Args&&... args) {
  if (logLevel() <= LogLevel::kDebug)
    logLine(LogLevel::kDebug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace crescent::core
