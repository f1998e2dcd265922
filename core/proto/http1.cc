// HTTP/1.x head parser (RFC 9112 §2-§5). See http1.h for the contract.
//
// Two steps keep the work linear and zero-copy: scan() looks for the end of the head
// with memchr over bytes not seen before (checking that every LF follows a CR, and
// validating the start line as soon as it ends), then the complete head is parsed once,
// in place, into views of the caller's buffer.

#include <cstring>

#include "core/proto/http1.h"

namespace crescent::core::http1 {

namespace detail {

namespace {
constexpr bool isTokenSymbol(unsigned c) {
  for (const char* s = "!#$%&'*+-.^_`|~"; *s != '\0'; ++s)
    if (static_cast<unsigned char>(*s) == c) return true;
  return false;
}

constexpr uint8_t classOf(unsigned c) {
  uint8_t k = 0;
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  bool digit = c >= '0' && c <= '9';
  if (alpha || digit || isTokenSymbol(c)) k |= kTchar;
  if (c == '\t' || (c >= 0x20 && c != 0x7f)) k |= kValueChar;
  if (c > 0x20 && c != 0x7f) k |= kTargetChar;
  if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) k |= kHexDigit;
  return k;
}

struct Table {
  uint8_t v[256];
  constexpr Table() : v() {
    for (unsigned c = 0; c < 256; ++c) v[c] = classOf(c);
  }
};
constexpr Table kTable;
}  // namespace

const uint8_t kCharClass[256] = {
#define R(i) kTable.v[i], kTable.v[i + 1], kTable.v[i + 2], kTable.v[i + 3]
#define R16(i) R(i), R(i + 4), R(i + 8), R(i + 12)
    R16(0),   R16(16),  R16(32),  R16(48),  R16(64),  R16(80),  R16(96),  R16(112),
    R16(128), R16(144), R16(160), R16(176), R16(192), R16(208), R16(224), R16(240),
#undef R16
#undef R
};

}  // namespace detail

namespace {

using detail::isTargetChar;
using detail::isTchar;
using detail::isValueChar;

// A step of the parser that may refuse the message: the status and reason of Error.
struct Refusal {
  int status = 0;  // 0: accepted
  const char* reason = "";
  const char* at = nullptr;  // the byte at fault; null: the start of its line
};
constexpr Refusal kAccepted{};

// Where a refusal of the line starting at `line_start` points, as an offset in `data`.
size_t offsetOf(const char* data, const Refusal& r, size_t line_start) {
  return r.at != nullptr ? static_cast<size_t>(r.at - data) : line_start;
}

bool isOws(char c) {
  return c == ' ' || c == '\t';
}

// "HTTP/1.0" or "HTTP/1.1" -> minor version. Another well-formed "HTTP/d.d" is a 505,
// anything else a 400.
Refusal parseVersion(std::string_view v, int& minor) {
  if (v.size() == 8 && v.substr(0, 5) == "HTTP/" && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
      v[7] >= '0' && v[7] <= '9') {
    if (v[5] == '1' && (v[7] == '0' || v[7] == '1')) {
      minor = v[7] - '0';
      return kAccepted;
    }
    return {505, "unsupported HTTP version", v.data()};
  }
  return {400, "malformed HTTP version", v.data()};
}

// request-line = method SP request-target SP HTTP-version (no CRLF in `line`).
Refusal parseRequestLine(std::string_view line, HttpHead& head) {
  size_t n = line.size(), i = 0;
  while (i < n && isTchar(line[i])) ++i;
  if (i == 0 || i == n || line[i] != ' ') return {400, "invalid method", line.data() + i};
  head.method = line.substr(0, i);
  size_t t = ++i;
  while (i < n && isTargetChar(line[i])) ++i;
  if (i == t) return {400, "empty request-target", line.data() + i};
  if (i == n || line[i] != ' ') return {400, "invalid request-target", line.data() + i};
  head.target = line.substr(t, i - t);
  return parseVersion(line.substr(i + 1), head.version_minor);
}

// status-line = HTTP-version SP status-code SP [ reason-phrase ]; a missing SP before an
// empty reason is tolerated (RFC 9112 §4 asks recipients to be lenient there).
Refusal parseStatusLine(std::string_view line, HttpHead& head) {
  size_t sp = line.find(' ');
  Refusal r = parseVersion(line.substr(0, sp), head.version_minor);
  if (r.status != 0) return r;
  if (sp == std::string_view::npos) return {400, "malformed status line"};
  std::string_view rest = line.substr(sp + 1);
  if (rest.size() < 3 || rest[0] < '1' || rest[0] > '9' || rest[1] < '0' || rest[1] > '9' ||
      rest[2] < '0' || rest[2] > '9')
    return {400, "malformed status code", rest.data()};
  head.status = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
  if (rest.size() == 3) return kAccepted;
  if (rest[3] != ' ') return {400, "malformed status code", rest.data() + 3};
  head.reason = rest.substr(4);
  for (const char& c : head.reason)
    if (!isValueChar(c)) return {400, "control character in reason phrase", &c};
  return kAccepted;
}

// Returns the first byte at or after `p` that is not a field-value byte; `limit` is the
// end of readable memory, and a CR is known to come before it. Eight bytes at a time
// while no byte in the word is a CTL or DEL (HTAB takes the byte-wise path).
const char* scanValue(const char* p, const char* limit) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL, kHighs = 0x8080808080808080ULL;
  while (limit - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    uint64_t below_space = (w - kOnes * 0x20) & ~w & kHighs;  // some byte < 0x20
    uint64_t d = w ^ (kOnes * 0x7f);
    uint64_t del = (d - kOnes) & ~d & kHighs;  // some byte == 0x7f
    if ((below_space | del) != 0) break;
    p += 8;
  }
  while (isValueChar(*p)) ++p;
  return p;
}

// Parses the field lines in [p, end), where `end` points at the CRLF of the empty line
// that ends the head. Every LF in range is known to follow a CR.
Refusal parseFields(const char* p, const char* end, size_t max_fields, HttpHead& head) {
  head.headers.reserve(16);
  while (p < end) {
    if (head.headers.size() == max_fields) return {400, "too many header fields", p};
    const char* name = p;
    while (isTchar(*p)) ++p;
    if (*p != ':') {
      if (isOws(*p)) return {400, p == name ? "obs-fold in head" : "whitespace before colon", p};
      if (*p == '\r') return {400, p == name ? "empty field name" : "field line without colon", p};
      return {400, p == name ? "empty field name" : "invalid character in field name", p};
    }
    if (p == name) return {400, "empty field name", p};
    std::string_view field_name(name, static_cast<size_t>(p - name));
    ++p;
    while (isOws(*p)) ++p;
    const char* value = p;
    p = scanValue(p, end + 2);
    // *p is not a value byte: it must be the CR of this line's CRLF.
    if (*p != '\r') return {400, "control character in field value", p};
    if (p[1] != '\n') return {400, "bare CR in field value", p};
    const char* value_end = p;
    while (value_end > value && isOws(value_end[-1])) --value_end;
    head.headers.push_back({field_name, {value, static_cast<size_t>(value_end - value)}});
    p += 2;
  }
  return kAccepted;
}

}  // namespace

ParseResult HeadParser::parseRequest(std::string_view buf, HttpHead& head, Error& err) {
  return parse(buf, head, err, true);
}

ParseResult HeadParser::parseResponse(std::string_view buf, HttpHead& head, Error& err) {
  return parse(buf, head, err, false);
}

void HeadParser::reset() {
  phase_ = Phase::kLeading;
  scanned_ = line_start_ = start_ = fields_start_ = head_len_ = 0;
  err_status_ = 0;
  err_reason_ = "";
}

ParseResult HeadParser::fail(Error& err, int status, const char* reason, size_t offset) {
  phase_ = Phase::kError;
  err_status_ = status;
  err_reason_ = reason;
  err_offset_ = offset;
  err.status = status;
  err.reason = reason;
  err.offset = offset;
  return ParseResult::kError;
}

// RFC 9112 §2.2: a server should ignore empty lines (CRLF) before a request line. Returns
// false while the buffer ends inside them (nothing else to scan yet).
bool HeadParser::skipLeadingEmptyLines(std::string_view buf, size_t limit, bool request) {
  size_t pos = scanned_;
  if (request) {
    while (pos + 1 < limit && buf[pos] == '\r' && buf[pos + 1] == '\n') pos += 2;
    if (pos == limit || (buf[pos] == '\r' && pos + 1 == limit)) {
      scanned_ = pos;
      return false;
    }
  }
  // A bare LF here is caught by the scan (a line made of "\n" alone).
  scanned_ = start_ = line_start_ = pos;
  phase_ = Phase::kStartLine;
  return true;
}

ParseResult HeadParser::parse(std::string_view buf, HttpHead& head, Error& err, bool request) {
  if (phase_ == Phase::kDone) return ParseResult::kComplete;
  if (phase_ == Phase::kError) return fail(err, err_status_, err_reason_, err_offset_);

  const size_t limit = buf.size() < max_head_ ? buf.size() : max_head_;
  const char* data = buf.data();
  bool start_line_parsed_now = false;  // head's start-line views point into this `buf`
  if (phase_ == Phase::kLeading && !skipLeadingEmptyLines(buf, limit, request)) {
    if (buf.size() >= max_head_) return fail(err, request ? 400 : 502, "head too large", max_head_);
    return ParseResult::kIncomplete;
  }

  size_t pos = scanned_;
  while (pos < limit) {
    const void* hit = std::memchr(data + pos, '\n', limit - pos);
    if (hit == nullptr) {
      // A CR with a byte after it that is not LF is bare: refuse it now rather than wait
      // for an LF that would not make the head valid. A CR in the last byte is looked at
      // again when the next byte arrives.
      if (const void* cr = std::memchr(data + pos, '\r', limit - pos)) {
        size_t at = static_cast<size_t>(static_cast<const char*>(cr) - data);
        if (at + 1 < limit) return fail(err, 400, "bare CR in head", at);
        pos = at;
        break;
      }
      pos = limit;
      break;
    }
    size_t lf = static_cast<size_t>(static_cast<const char*>(hit) - data);
    // The first bad byte decides, as it does when the head arrives a byte at a time: a
    // bare CR before this LF is refused before the LF itself.
    if (lf > pos + 1) {
      if (const void* cr = std::memchr(data + pos, '\r', lf - 1 - pos))
        return fail(err, 400, "bare CR in head",
                    static_cast<size_t>(static_cast<const char*>(cr) - data));
    }
    if (lf == line_start_ || data[lf - 1] != '\r') return fail(err, 400, "bare LF in head", lf);
    std::string_view line(data + line_start_, lf - 1 - line_start_);
    pos = lf + 1;
    if (phase_ == Phase::kStartLine) {
      head.clear();
      Refusal r = request ? parseRequestLine(line, head) : parseStatusLine(line, head);
      if (r.status != 0) return fail(err, r.status, r.reason, offsetOf(data, r, line_start_));
      start_line_parsed_now = true;
      fields_start_ = pos;
      phase_ = Phase::kFields;
    } else if (line.empty()) {
      head_len_ = pos;
      phase_ = Phase::kDone;
      break;
    }
    line_start_ = pos;
  }
  scanned_ = pos;

  if (phase_ != Phase::kDone) {
    if (buf.size() < max_head_) return ParseResult::kIncomplete;
    if (!request) return fail(err, 502, "response head too large", max_head_);
    if (phase_ == Phase::kStartLine) return fail(err, 400, "request line too long", max_head_);
    return fail(err, 400, "request head too large", max_head_);
  }

  if (!start_line_parsed_now) {
    // Validated by an earlier call; re-read it from this buffer so the views are current.
    head.clear();
    std::string_view line(data + start_, fields_start_ - 2 - start_);
    Refusal r = request ? parseRequestLine(line, head) : parseStatusLine(line, head);
    // (only when the caller changed bytes already passed)
    if (r.status != 0) return fail(err, r.status, r.reason, offsetOf(data, r, start_));
  }
  Refusal r = parseFields(data + fields_start_, data + head_len_ - 2, max_fields_, head);
  if (r.status != 0) return fail(err, r.status, r.reason, offsetOf(data, r, fields_start_));
  return ParseResult::kComplete;
}

}  // namespace crescent::core::http1
