#include "core/session/error_capture.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/session/traffic_log.h"

namespace crescent::core {

ErrorCaptures& ErrorCaptures::process() {
  static ErrorCaptures captures;
  return captures;
}

void ErrorCaptures::capture(CapturedError e, std::string_view message, size_t offset) {
  e.length = message.size();
  e.offset = std::min(offset, message.size());
  e.excerpt_at = e.offset > kExcerpt ? e.offset - kExcerpt : 0;
  e.excerpt = std::string(message.substr(e.excerpt_at, 2 * kExcerpt));
  e.date_ms = wallClockMs();
  std::lock_guard lock(mu_);
  e.event = events_++;
  for (CapturedError& slot : slots_) {
    if (slot.request == e.request && slot.proxy == e.proxy) {
      slot = std::move(e);
      return;
    }
  }
  slots_.push_back(std::move(e));
}

std::vector<CapturedError> ErrorCaptures::snapshot(std::string_view kind,
                                                   std::string_view proxy) const {
  std::vector<CapturedError> out;
  {
    std::lock_guard lock(mu_);
    for (const CapturedError& e : slots_) {
      if (kind == "frontend" && !e.request) continue;
      if (kind == "backend" && e.request) continue;
      if (!proxy.empty() && e.proxy != proxy) continue;
      out.push_back(e);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const CapturedError& a, const CapturedError& b) { return a.event < b.event; });
  return out;
}

uint64_t ErrorCaptures::total() const {
  std::lock_guard lock(mu_);
  return events_;
}

void ErrorCaptures::clear() {
  std::lock_guard lock(mu_);
  slots_.clear();
  events_ = 0;
}

namespace {

// One excerpt line per message line (HAProxy's dump): "  00016  Bad Header: x\r\n".
void appendExcerpt(std::string& out, const CapturedError& e) {
  size_t pos = 0;
  const std::string& x = e.excerpt;
  while (pos < x.size()) {
    fmt::format_to(std::back_inserter(out), "  {:05}  ", e.excerpt_at + pos);
    size_t width = 0;
    while (pos < x.size() && width < 72) {
      unsigned char c = static_cast<unsigned char>(x[pos++]);
      if (c == '\r') {
        out += "\\r";
      } else if (c == '\n') {
        out += "\\n";
        break;
      } else if (c == '\\') {
        out += "\\\\";
      } else if (c < 0x20 || c >= 0x7f) {
        fmt::format_to(std::back_inserter(out), "\\x{:02X}", c);
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++width;
    }
    out.push_back('\n');
  }
}

}  // namespace

std::string formatErrors(const std::vector<CapturedError>& captures, uint64_t total) {
  std::string out =
      fmt::format("Total events captured on [{}] : {}\n", formatLogDate(wallClockMs()), total);
  for (const CapturedError& e : captures) {
    if (e.request) {
      fmt::format_to(std::back_inserter(out), "[{}] frontend {}: invalid request\n",
                     formatLogDate(e.date_ms), e.proxy);
      fmt::format_to(std::back_inserter(out),
                     "  backend <NONE>, server <NONE>, event #{}, src {}\n", e.event, e.source);
    } else {
      fmt::format_to(std::back_inserter(out), "[{}] backend {}: invalid response\n",
                     formatLogDate(e.date_ms), e.proxy);
      fmt::format_to(std::back_inserter(out), "  server {}, event #{}, src {}\n", e.server, e.event,
                     e.source);
    }
    fmt::format_to(std::back_inserter(out), "  status {}: {}, len {}, error at position {}\n",
                   e.status, e.reason, e.length, e.offset);
    appendExcerpt(out, e);
  }
  return out;
}

}  // namespace crescent::core
