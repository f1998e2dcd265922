#include "core/base/wall_clock.h"

#include <sys/time.h>

#include <climits>
#include <cstring>
#include <ctime>

namespace crescent::core {
namespace {

void append2(char* p, int v) {
  p[0] = static_cast<char>('0' + v / 10 % 10);
  p[1] = static_cast<char>('0' + v % 10);
}

void append4(char* p, int v) {
  append2(p, v / 100);
  append2(p + 2, v % 100);
}

// "dd/Mon/yyyy:HH:MM:SS." (21 bytes), local time.
size_t writeHaproxySecond(char* p, time_t secs) {
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm {};
  localtime_r(&secs, &tm);
  append2(p, tm.tm_mday);
  p[2] = '/';
  std::memcpy(p + 3, kMonths[tm.tm_mon], 3);
  p[6] = '/';
  append4(p + 7, tm.tm_year + 1900);
  p[11] = ':';
  append2(p + 12, tm.tm_hour);
  p[14] = ':';
  append2(p + 15, tm.tm_min);
  p[17] = ':';
  append2(p + 18, tm.tm_sec);
  p[20] = '.';
  return 21;
}

// "yyyy-mm-ddTHH:MM:SS." (20 bytes), UTC.
size_t writeIsoSecond(char* p, time_t secs) {
  struct tm tm {};
  gmtime_r(&secs, &tm);
  append4(p, tm.tm_year + 1900);
  p[4] = '-';
  append2(p + 5, tm.tm_mon + 1);
  p[7] = '-';
  append2(p + 8, tm.tm_mday);
  p[10] = 'T';
  append2(p + 11, tm.tm_hour);
  p[13] = ':';
  append2(p + 14, tm.tm_min);
  p[16] = ':';
  append2(p + 17, tm.tm_sec);
  p[19] = '.';
  return 20;
}

// The text of one second in one format; it changes once a second.
struct SecondText {
  uint64_t sec = UINT64_MAX;
  size_t len = 0;
  char text[24];
};

}  // namespace

uint64_t wallClockMs() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}

void appendDate(std::string& out, uint64_t epoch_ms, DateFormat format) {
  bool iso = format == DateFormat::kIso8601Utc;
  thread_local SecondText cache[2];
  SecondText& c = cache[iso ? 1 : 0];
  uint64_t sec = epoch_ms / 1000;
  if (sec != c.sec) {
    time_t secs = static_cast<time_t>(sec);
    c.len = iso ? writeIsoSecond(c.text, secs) : writeHaproxySecond(c.text, secs);
    c.sec = sec;
  }
  char ms[4];
  unsigned m = static_cast<unsigned>(epoch_ms % 1000);
  ms[0] = static_cast<char>('0' + m / 100);
  ms[1] = static_cast<char>('0' + m / 10 % 10);
  ms[2] = static_cast<char>('0' + m % 10);
  ms[3] = 'Z';
  out.append(c.text, c.len);
  out.append(ms, iso ? 4 : 3);
}

}  // namespace crescent::core
