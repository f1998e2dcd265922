#include "core/session/traffic_log.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdint>

namespace crescent::core {

namespace {

// Appends v in decimal (a negative value with its sign).
void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

}  // namespace

void appendLogDate(std::string& out, uint64_t epoch_ms) {
  appendDate(out, epoch_ms, DateFormat::kHaproxy);
}

std::string formatLogDate(uint64_t epoch_ms) {
  std::string out;
  appendLogDate(out, epoch_ms);
  return out;
}

std::string formatHttpLog(const HttpLogLine& l) {
  // Appended piece by piece: this runs once per exchange, and a format string with 23
  // arguments cost more than the rest of the log path together.
  std::string out;
  out.reserve(160 + l.request.size());
  out += l.src->ip();
  out += ':';
  appendInt(out, l.src->port());
  out += " [";
  appendLogDate(out, l.date_ms);
  out += "] ";
  out += l.frontend;
  out += ' ';
  out += l.backend;
  out += '/';
  out += l.server;
  out += ' ';
  for (int64_t t : {l.tq, l.tw, l.tc, l.tr}) {
    appendInt(out, t);
    out += '/';
  }
  appendInt(out, static_cast<int64_t>(l.ta));
  out += ' ';
  appendInt(out, l.status);
  out += ' ';
  appendInt(out, static_cast<int64_t>(l.bytes));
  out += " - - ";
  out += l.term;
  if (l.term.size() < 4) out.append(4 - l.term.size(), '-');
  out += ' ';
  for (int v : {l.actconn, l.feconn, l.beconn, l.srv_conn}) {
    appendInt(out, v);
    out += '/';
  }
  appendInt(out, l.retries);
  out += ' ';
  appendInt(out, l.srv_queue);
  out += '/';
  appendInt(out, l.be_queue);
  out += " \"";
  out += l.request.empty() ? std::string_view("<BADREQ>") : l.request;
  out += '"';
  return out;
}

}  // namespace crescent::core
