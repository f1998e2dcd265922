#include "core/session/traffic_log.h"

#include <fmt/format.h>
#include <sys/time.h>

#include <charconv>
#include <climits>
#include <cstdint>
#include <cstring>
#include <ctime>

namespace crescent::core {

namespace {

// Appends v in decimal (a negative value with its sign).
void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

void append2(char* p, int v) {
  p[0] = static_cast<char>('0' + v / 10 % 10);
  p[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

void appendLogDate(std::string& out, uint64_t epoch_ms) {
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  // "dd/Mon/yyyy:HH:MM:SS" changes once a second: each thread keeps the last one, so a
  // log line costs no localtime_r (which takes a lock and may read the zone file).
  thread_local uint64_t cached_sec = UINT64_MAX;
  thread_local char cached[24];
  uint64_t sec = epoch_ms / 1000;
  if (sec != cached_sec) {
    time_t secs = static_cast<time_t>(sec);
    struct tm tm {};
    localtime_r(&secs, &tm);
    char* p = cached;
    append2(p, tm.tm_mday);
    p[2] = '/';
    std::memcpy(p + 3, kMonths[tm.tm_mon], 3);
    p[6] = '/';
    int year = tm.tm_year + 1900;
    append2(p + 7, year / 100);
    append2(p + 9, year % 100);
    p[11] = ':';
    append2(p + 12, tm.tm_hour);
    p[14] = ':';
    append2(p + 15, tm.tm_min);
    p[17] = ':';
    append2(p + 18, tm.tm_sec);
    p[20] = '.';
    cached_sec = sec;
  }
  char ms[3];
  unsigned m = static_cast<unsigned>(epoch_ms % 1000);
  ms[0] = static_cast<char>('0' + m / 100);
  ms[1] = static_cast<char>('0' + m / 10 % 10);
  ms[2] = static_cast<char>('0' + m % 10);
  out.append(cached, 21);
  out.append(ms, 3);
}

std::string formatLogDate(uint64_t epoch_ms) {
  std::string out;
  appendLogDate(out, epoch_ms);
  return out;
}

uint64_t wallClockMs() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
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
