// Message framing (RFC 9112 §6, §9.3) and connection-specific fields (RFC 9110 §7.6.1).
// See http1.h for the contract.

#include <algorithm>
#include <vector>

#include "core/proto/http1.h"

namespace crescent::core::http1 {

namespace {

bool isOws(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

// Calls f(element) for each non-empty element of a comma-separated list, OWS trimmed.
template <class F>
void forEachListElement(std::string_view value, F&& f) {
  while (true) {
    size_t comma = value.find(',');
    std::string_view elem = trimOws(value.substr(0, comma));
    if (!elem.empty()) f(elem);
    if (comma == std::string_view::npos) return;
    value.remove_prefix(comma + 1);
  }
}

constexpr uint64_t kMaxContentLength = 0x7fffffffffffffffULL;

// Content-Length = 1*DIGIT, at most 2^63-1.
bool parseContentLength(std::string_view v, uint64_t& out) {
  if (v.empty()) return false;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (kMaxContentLength - d) / 10) return false;
    n = n * 10 + d;
  }
  out = n;
  return true;
}

// What one pass over the fields learns about framing and persistence.
struct FieldScan {
  size_t host = 0;
  bool has_cl = false;
  uint64_t cl = 0;
  bool has_te = false;
  bool te_any = false;           // at least one coding listed
  bool te_chunked = false;       // chunked seen
  bool te_chunked_last = false;  // the last coding seen is chunked
  bool te_chunked_twice = false;
  bool te_other = false;  // a coding other than chunked
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  bool has_upgrade = false;
  bool expect_continue = false;
  const char* error = nullptr;  // a Content-Length problem found on the way
  // The names of the fields at fault, for Error::at: the Content-Length of `error`, the
  // last Transfer-Encoding, the second Host.
  std::string_view error_at, te_at, host_at;
};

void scanTransferEncoding(std::string_view value, FieldScan& s) {
  s.has_te = true;
  forEachListElement(value, [&](std::string_view coding) {
    s.te_any = true;
    if (equalsNoCase(coding, "chunked")) {
      if (s.te_chunked) s.te_chunked_twice = true;
      s.te_chunked = s.te_chunked_last = true;
    } else {
      s.te_other = true;
      s.te_chunked_last = false;
    }
  });
}

void scanContentLength(const HeaderField& f, FieldScan& s) {
  uint64_t n = 0;
  if (!parseContentLength(f.value, n)) {
    if (s.error == nullptr) {
      s.error = "invalid Content-Length";
      s.error_at = f.name;
    }
    return;
  }
  if (s.has_cl && n != s.cl && s.error == nullptr) {
    s.error = "differing Content-Length values";
    s.error_at = f.name;
  }
  s.has_cl = true;
  s.cl = n;
}

void scanConnection(std::string_view value, FieldScan& s) {
  forEachListElement(value, [&](std::string_view t) {
    if (equalsNoCase(t, "close"))
      s.conn_close = true;
    else if (equalsNoCase(t, "keep-alive"))
      s.conn_keep_alive = true;
    else if (equalsNoCase(t, "upgrade"))
      s.conn_upgrade = true;
  });
}

// One pass; names are told apart by length first so most fields cost one comparison.
FieldScan scanFields(const HttpHead& h) {
  FieldScan s;
  for (const HeaderField& f : h.headers) {
    switch (f.name.size()) {
      case 4:
        if (equalsNoCase(f.name, "host") && ++s.host == 2) s.host_at = f.name;
        break;
      case 6:
        if (equalsNoCase(f.name, "expect") && equalsNoCase(f.value, "100-continue"))
          s.expect_continue = true;
        break;
      case 7:
        if (equalsNoCase(f.name, "upgrade")) s.has_upgrade = true;
        break;
      case 10:
        if (equalsNoCase(f.name, "connection")) scanConnection(f.value, s);
        break;
      case 14:
        if (equalsNoCase(f.name, "content-length")) scanContentLength(f, s);
        break;
      case 17:
        if (equalsNoCase(f.name, "transfer-encoding")) {
          scanTransferEncoding(f.value, s);
          s.te_at = f.name;
        }
        break;
      default:
        break;
    }
  }
  return s;
}

bool refuse(Error& err, int status, const char* reason, std::string_view at = {}) {
  err.status = status;
  err.reason = reason;
  err.at = at;
  return false;
}

// Content-Length / Transfer-Encoding rules shared by requests and responses; sets
// out.body and out.content_length for a message that may have a body.
bool bodyFraming(const FieldScan& s, Framing& out, Error& err) {
  if (s.error != nullptr) return refuse(err, 400, s.error, s.error_at);
  if (s.has_cl && s.has_te)
    return refuse(err, 400, "both Content-Length and Transfer-Encoding", s.te_at);
  if (s.has_te) {
    if (!s.te_any) return refuse(err, 400, "empty Transfer-Encoding", s.te_at);
    if (s.te_chunked && !s.te_chunked_last)
      return refuse(err, 400, "chunked is not the final coding", s.te_at);
    if (s.te_chunked_twice) return refuse(err, 400, "chunked applied twice", s.te_at);
    if (s.te_other) return refuse(err, 501, "unsupported transfer coding", s.te_at);
    out.body = BodyKind::kChunked;
  } else if (s.has_cl) {
    out.body = BodyKind::kContentLength;
    out.content_length = s.cl;
  }
  return true;
}

// RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
bool persistent(const HttpHead& h, const FieldScan& s) {
  if (s.conn_close) return false;
  return h.version_minor >= 1 || s.conn_keep_alive;
}

// RFC 3986 §2.3, §2.2: unreserved and sub-delims, the bytes of a reg-name besides "%HH".
bool isRegNameChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':  // unreserved
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':  // sub-delims
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

}  // namespace

bool validAuthority(std::string_view a, bool require_host, bool require_port) {
  size_t i = 0, n = a.size();
  if (i < n && a[0] == '[') {
    // IP-literal: an IPv6 address (hex digits, ':' and a dotted IPv4 tail) or IPvFuture
    // ("v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )), RFC 3986 §3.2.2.
    size_t close = a.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (size_t k = 1; k < close; ++k) {
      char c = a[k];
      if (!(detail::isHexDigit(c) || c == ':' || c == '.' || ((c == 'v' || c == 'V') && k == 1) ||
            isRegNameChar(c)))
        return false;
    }
    i = close + 1;
  } else {
    while (i < n && a[i] != ':') {
      if (a[i] == '%') {
        if (i + 2 >= n || !detail::isHexDigit(a[i + 1]) || !detail::isHexDigit(a[i + 2]))
          return false;
        i += 3;
        continue;
      }
      if (!isRegNameChar(a[i])) return false;
      ++i;
    }
    if (i == 0 && require_host) return false;
  }
  if (i == n) return !require_port;
  if (a[i] != ':') return false;
  std::string_view port = a.substr(i + 1);  // port = *DIGIT; at most 65535 here
  if (port.size() > 5 || (require_port && port.empty())) return false;
  uint32_t v = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  return v <= 65535;
}

namespace {

// The target's form (RFC 9112 §3.2) with the method; for absolute-form, `authority` gets
// the target's authority.
bool checkTarget(const HttpHead& req, std::string_view& authority, Error& err) {
  std::string_view t = req.target;
  if (t.find('#') != std::string_view::npos)
    return refuse(err, 400, "fragment in request-target", t);
  if (req.method == "CONNECT") {
    // authority-form, §3.2.3: host ":" port, nothing else.
    if (!validAuthority(t, true, true)) return refuse(err, 400, "CONNECT needs host:port", t);
    return true;
  }
  if (!t.empty() && t[0] == '/') return true;  // origin-form, §3.2.1
  if (t == "*") {                              // asterisk-form, §3.2.4
    if (req.method != "OPTIONS") return refuse(err, 400, "\"*\" target with another method", t);
    return true;
  }
  // absolute-form, §3.2.2: only http and https URIs (RFC 9110 §4.2) are proxied.
  size_t colon = t.find("://");
  std::string_view scheme = t.substr(0, colon);
  if (colon == std::string_view::npos ||
      !(equalsNoCase(scheme, "http") || equalsNoCase(scheme, "https")))
    return refuse(err, 400, "request-target is not origin-form or an http(s) URI", t);
  std::string_view rest = t.substr(colon + 3);
  size_t end = rest.find_first_of("/?");
  authority = rest.substr(0, end);
  // RFC 9110 §4.2.4: userinfo in an http(s) URI is an error; §4.2.1: the host is required.
  if (authority.find('@') != std::string_view::npos)
    return refuse(err, 400, "userinfo in request-target", authority);
  if (!validAuthority(authority, true, false))
    return refuse(err, 400, "invalid authority in request-target", authority);
  return true;
}

}  // namespace

bool analyzeRequest(HttpHead& req, Framing& out, Error& err) {
  out = Framing{};
  FieldScan s = scanFields(req);
  if (s.host > 1) return refuse(err, 400, "several Host fields", s.host_at);
  if (s.host == 0 && req.version_minor >= 1) return refuse(err, 400, "missing Host");
  std::string_view authority;
  if (!checkTarget(req, authority, err)) return false;
  HeaderField* host = nullptr;
  for (HeaderField& f : req.headers)
    if (f.name.size() == 4 && equalsNoCase(f.name, "host")) host = &f;
  // RFC 9110 §7.2: Host = uri-host [ ":" port ], possibly empty.
  if (host != nullptr && !validAuthority(host->value, false, false))
    return refuse(err, 400, "invalid Host", host->name);
  if (!authority.empty()) {
    // RFC 9112 §3.2.2: a proxy replaces Host by the target's authority, so that rules,
    // scripts and the server all see one host. Both views point into the same buffer.
    if (host != nullptr)
      host->value = authority;
    else
      req.headers.push_back({"Host", authority});
  }
  if (s.has_te && req.version_minor == 0)
    return refuse(err, 400, "Transfer-Encoding in an HTTP/1.0 request", s.te_at);
  if (!bodyFraming(s, out, err)) return false;
  out.keep_alive = persistent(req, s);
  bool http11 = req.version_minor >= 1;
  out.upgrade = (http11 && s.conn_upgrade && s.has_upgrade) || req.method == "CONNECT";
  out.expect_continue = http11 && s.expect_continue;
  return true;
}

bool analyzeResponse(const HttpHead& resp, std::string_view request_method, Framing& out,
                     Error& err) {
  out = Framing{};
  int status = resp.status;
  bool informational = status >= 100 && status < 200;
  bool tunnel = request_method == "CONNECT" && status >= 200 && status < 300;
  if (informational || tunnel) {
    // No body; framing fields are meaningless here (RFC 9110 §9.3.6, §15.2).
    FieldScan s = scanFields(resp);
    out.keep_alive = persistent(resp, s);
    out.upgrade = tunnel || status == 101;
    return true;
  }
  FieldScan s = scanFields(resp);
  if (!bodyFraming(s, out, err)) return false;
  out.keep_alive = persistent(resp, s);
  if (request_method == "HEAD" || status == 204 || status == 304) {
    out.body = BodyKind::kNone;
    out.content_length = 0;
  } else if (out.body == BodyKind::kChunked && resp.version_minor == 0) {
    out.keep_alive = false;  // RFC 9112 §6.1: faulty framing in HTTP/1.0; close after it
  } else if (out.body == BodyKind::kNone) {
    out.body = BodyKind::kUntilClose;
    out.keep_alive = false;
  }
  return true;
}

bool hasToken(std::string_view value, std::string_view token) {
  bool found = false;
  forEachListElement(value, [&](std::string_view t) { found = found || equalsNoCase(t, token); });
  return found;
}

namespace {

// Fields a Connection option may not remove: they frame or route the message.
bool isProtectedField(std::string_view name) {
  return equalsNoCase(name, "content-length") || equalsNoCase(name, "transfer-encoding") ||
         equalsNoCase(name, "host");
}

bool lessNoCase(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return x < y;
  }
  return a.size() < b.size();
}

bool isStandardHopByHop(std::string_view name, bool keep_upgrade) {
  switch (name.size()) {
    case 2:
      return equalsNoCase(name, "te");
    case 7:
      return !keep_upgrade && equalsNoCase(name, "upgrade");
    case 10:
      return equalsNoCase(name, "connection") || equalsNoCase(name, "keep-alive");
    case 16:
      return equalsNoCase(name, "proxy-connection");
    default:
      return false;
  }
}

}  // namespace

void removeHopByHop(HttpHead& head, bool keep_upgrade) {
  // Options named in Connection, other than the standard ones removed anyway. Kept sorted
  // so that a hostile list of many options costs O(n log n), not fields x options.
  std::vector<std::string_view> named;
  for (const HeaderField& f : head.headers) {
    if (!equalsNoCase(f.name, "connection")) continue;
    forEachListElement(f.value, [&](std::string_view t) {
      if (isStandardHopByHop(t, false) || isProtectedField(t) || equalsNoCase(t, "close")) return;
      named.push_back(t);
    });
  }
  std::sort(named.begin(), named.end(), lessNoCase);
  auto hop = [&](const HeaderField& f) {
    if (isStandardHopByHop(f.name, keep_upgrade)) return true;
    return !named.empty() && std::binary_search(named.begin(), named.end(), f.name, lessNoCase);
  };
  head.headers.erase(std::remove_if(head.headers.begin(), head.headers.end(), hop),
                     head.headers.end());
}

}  // namespace crescent::core::http1
