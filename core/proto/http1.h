#pragma once

// HTTP/1.1 codec (RFC 9112, RFC 9110), sans-I/O: bytes in, parsed heads and body
// events out. No <uv.h> here. Strict by design: everything that enables request
// smuggling or desynchronisation is an error, never "fixed up".

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/proto/http_head.h"

namespace crescent::core::http1 {

/// Why a message was refused, with the status a proxy answers (400, 413, 501,
/// 505) and a short reason for the log line ("both Content-Length and Transfer-Encoding").
struct Error {
  int status = 400;
  std::string reason;
  /// Byte of the buffer where the fault was found (HAProxy's "error at position"): the
  /// first bad byte, the start of the line at fault, or max_head for a head too large.
  size_t offset = 0;
  /// From analyzeRequest/analyzeResponse: a view, into the parsed head's buffer, of what
  /// is at fault (a field name, the request-target); empty when nothing in particular.
  std::string_view at;
};

/// Where `err` (from analyzeRequest/analyzeResponse on a head parsed from `buf`) points in
/// `buf`: the offset of err.at, or `fallback` (the head's length) when it points nowhere.
inline size_t faultOffset(const Error& err, std::string_view buf, size_t fallback) {
  if (err.at.empty() || err.at.data() < buf.data() || err.at.data() >= buf.data() + buf.size())
    return fallback;
  return static_cast<size_t>(err.at.data() - buf.data());
}

enum class ParseResult { kIncomplete, kComplete, kError };

/// Incremental parser of one message head (request line or status line, then fields,
/// up to and including the empty line).
///
/// Usage: the caller accumulates bytes in one contiguous buffer and calls parse*() with
/// the whole buffer each time more bytes arrive; the parser remembers how far it scanned,
/// so total work stays linear. The buffer may move between calls (it is re-read through
/// the new `buf`), but bytes already passed must not change. On kComplete, `head` holds
/// views into `buf` (zero-copy: the buffer must outlive the head) and headLength() is the
/// head's size in bytes, including skipped leading empty lines; bytes after it belong to
/// the body or the next message. `head` is cleared (HttpHead::clear) and refilled by the
/// call that returns kComplete; on kIncomplete or kError its contents are unspecified.
/// After kComplete or kError, further calls return the same result (kError refills `err`)
/// until reset(), which must precede the next message.
///
/// The result does not depend on how the input was split across calls: errors are
/// detected in input order (bare LF as soon as it arrives, the start line as soon as it
/// ends, fields when the head is complete).
///
/// Refused with 400: bare LF where CRLF is required, a bare CR (as soon as the byte after
/// it arrives, not when the head ends), more than `max_fields` field lines, obs-fold (a line
/// starting with SP or HTAB), whitespace between a field name and its colon, an empty or
/// invalid field name (not a token), control characters other than HTAB in values, an
/// invalid method token, an empty request-target or one with control characters, spaces
/// or DEL (bytes >= 0x80 are accepted), a malformed status line (the status must be
/// 100..999; a missing reason phrase, with or without its SP, is accepted). Refused with
/// 505: a version other than HTTP/1.0 or HTTP/1.1. Only the first `max_head` bytes are
/// looked at: without a complete head in them, 400 for requests (the issue's rule: an
/// over-long head is a malformed request, as in HAProxy; the reason says whether the
/// request line or the field section overflowed) and 502 for responses. For responses, the status
/// says what was wrong; the proxy answers 502 whatever it is. Leading and trailing whitespace
/// around a field value is not part of the value's view. Empty lines (CRLF) before a request line
/// are skipped (RFC 9112 §2.2); before a status line they are an error.
class HeadParser {
 public:
  /// `max_head`: bytes looked at for a complete head. `max_fields`: field lines accepted
  /// (HAProxy's tune.http.maxhdr, 101 by default); one more is refused with 400 ("too many
  /// header fields"; for a response the proxy answers 502).
  explicit HeadParser(size_t max_head = 16384, size_t max_fields = kDefaultMaxFields)
      : max_head_(max_head), max_fields_(max_fields) {}
  static constexpr size_t kDefaultMaxFields = 101;
  ParseResult parseRequest(std::string_view buf, HttpHead& head, Error& err);
  ParseResult parseResponse(std::string_view buf, HttpHead& head, Error& err);
  size_t headLength() const { return head_len_; }
  void reset();

 private:
  enum class Phase { kLeading, kStartLine, kFields, kDone, kError };
  ParseResult parse(std::string_view buf, HttpHead& head, Error& err, bool request);
  ParseResult fail(Error& err, int status, const char* reason, size_t offset);
  bool skipLeadingEmptyLines(std::string_view buf, size_t limit, bool request);
  size_t max_head_;
  size_t max_fields_;
  Phase phase_ = Phase::kLeading;
  size_t scanned_ = 0;       // bytes known not to contain the end of the head
  size_t line_start_ = 0;    // start of the line being scanned
  size_t start_ = 0;         // start of the start line (after skipped empty lines)
  size_t fields_start_ = 0;  // first byte after the start line's CRLF
  size_t head_len_ = 0;
  int err_status_ = 0;  // kept so that calls after an error report it again
  const char* err_reason_ = "";
  size_t err_offset_ = 0;
};

/// How a message body is delimited (RFC 9112 §6).
enum class BodyKind { kNone, kContentLength, kChunked, kUntilClose };

/// What a proxy needs to know about a parsed head beyond its fields.
struct Framing {
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;   ///< for kContentLength
  bool keep_alive = true;        ///< persistence per RFC 9112 §9.3 (version + Connection)
  bool upgrade = false;          ///< Connection: upgrade + Upgrade present (requests), or 101
  bool expect_continue = false;  ///< request has Expect: 100-continue
};

/// Validates a request head and computes its framing. Errors (status 400 unless noted):
/// both Content-Length and Transfer-Encoding; several Content-Length values that differ
/// (identical repeats are accepted and folded; a comma list in one field is refused); a
/// Content-Length that is not 1*DIGIT or exceeds 2^63-1; a Transfer-Encoding where chunked
/// is present but not the final coding, or is applied twice, or that lists no coding (400);
/// any other coding than chunked, e.g. "gzip" or "gzip, chunked" (501); Transfer-Encoding
/// in an HTTP/1.0 request; a missing Host in HTTP/1.1 or several Host fields; a Host that
/// is not an RFC 3986 reg-name, IPv4 address or IP literal with an optional port ("a/b",
/// "a, b"; an empty Host is accepted, RFC 9110 §7.2). The request-target (RFC 9112 §3.2)
/// must be origin-form (starting with "/"), "*" with OPTIONS only, host:port with CONNECT
/// only, or an absolute http/https URI without userinfo; a fragment ("#") is refused in
/// every form. For an absolute-form target, Host's value is replaced by the target's
/// authority (added when absent), a view into the target (§3.2.2: rules, scripts and the
/// server then see one host); the target itself is forwarded as received.
/// "Content-Length: 0" gives kContentLength with content_length 0 (a BodyDecoder reset
/// with it is done at once). Requests never get kUntilClose. `expect_continue` and the
/// Upgrade part of `upgrade` are only set for HTTP/1.1 (RFC 9110 §10.1.1, §7.8); CONNECT
/// always sets `upgrade` (the connection becomes a tunnel after a 2xx).
bool analyzeRequest(HttpHead& req, Framing& out, Error& err);

/// True when `a` is host [":" port] per RFC 3986 §3.2.2-§3.2.3: a reg-name (unreserved,
/// sub-delims, "%HH"), an IPv4 address or a bracketed IP literal, then an optional port of
/// digits (at most 65535). `require_host`: the host may not be empty; `require_port`: the
/// port must be present and non-empty (CONNECT's authority-form).
bool validAuthority(std::string_view a, bool require_host, bool require_port);

/// Computes a response's framing. `request_method` (case-sensitive) decides: "HEAD" means
/// no body; "CONNECT" with a 2xx means a tunnel (upgrade = true, body kNone, and
/// Content-Length/Transfer-Encoding are ignored as RFC 9110 §9.3.6 requires). 1xx, 204
/// and 304 have no body; 101 sets upgrade; 1xx fields are not checked for framing. Without
/// Content-Length or chunked the body runs until close (keep_alive = false). Same
/// Content-Length and Transfer-Encoding rules as requests (an invalid one is an error; the
/// proxy answers 502), except that Transfer-Encoding in an HTTP/1.0 response is honoured
/// and makes keep_alive false (RFC 9112 §6.1).
bool analyzeResponse(const HttpHead& resp, std::string_view request_method, Framing& out,
                     Error& err);

/// Receives the payload of a body (chunk framing removed) for filters such as
/// compression. Plain forwarding needs no sink.
class BodySink {
 public:
  virtual ~BodySink() = default;
  virtual void onData(std::string_view data) = 0;
};

/// Incremental body decoder: tells where a body ends in a byte stream, validating chunked
/// framing (RFC 9112 §7.1: hex size with optional extensions, CRLF after data, trailer
/// fields, final CRLF). It never copies: feed() reports how many input bytes belong to
/// the body; the proxy forwards exactly those bytes as they are.
class BodyDecoder {
 public:
  enum class State { kBody, kDone, kError };

  /// Starts a new body. For kUntilClose the body ends only at finish(); kNone and a
  /// content length of 0 are done at once. Chunk size lines (with extensions) and each
  /// trailer line are limited to 4096 bytes, the whole trailer section to 16384 bytes.
  /// Chunk sizes above 2^63-1, empty sizes, non-hex digits and whitespace other than
  /// before ';' are errors; extensions and trailers must not contain control characters
  /// other than HTAB, and every line must end in CRLF.
  void reset(BodyKind kind, uint64_t content_length = 0);

  /// Consumes up to `len` bytes of `data`; returns how many belong to this body (fewer
  /// than `len` only when the body ended inside `data`). Payload bytes go to `sink` when
  /// non-null. After an error, state() is kError and error() says why (bad chunk size,
  /// missing CRLF, chunk size overflow, over-long chunk line or trailer); the bytes
  /// before the offending one are counted in the return value. Returns 0 once done or
  /// in error.
  size_t feed(const char* data, size_t len, BodySink* sink = nullptr);

  /// The connection closed: completes a kUntilClose body; any other unfinished body
  /// becomes an error ("truncated body").
  void finish();

  State state() const { return state_; }
  bool done() const { return state_ == State::kDone; }
  const Error& error() const { return error_; }
  /// Payload bytes seen so far (chunk framing excluded).
  uint64_t payloadBytes() const { return payload_; }
  /// Once done: the trailer fields of a chunked body that may be forwarded, or nullptr when
  /// there are none. Fields RFC 9110 §6.5.1 forbids in trailers (Transfer-Encoding,
  /// Content-Length, Host, Trailer, hop-by-hop, authentication, request modifiers, caching
  /// and payload-processing fields) are dropped. Owned by the decoder until reset().
  const HttpHead* trailers() const { return has_trailers_ ? &trailers_ : nullptr; }

 private:
  enum class Chunk {
    kSize,          // hex digits of a chunk size
    kSizeWs,        // whitespace after the size, before ';'
    kExt,           // chunk extensions, up to CR
    kSizeLf,        // LF ending the size line
    kData,          // chunk payload
    kDataCr,        // CR after chunk payload
    kDataLf,        // LF after chunk payload
    kTrailerName,   // start of a trailer line, or its field name
    kTrailerValue,  // trailer field value, up to CR
    kTrailerLf,     // LF ending a trailer line
    kLastLf,        // LF of the empty line ending the message
  };
  size_t feedChunked(const char* data, size_t len, BodySink* sink);
  size_t chunkData(const char* data, size_t len, BodySink* sink);
  bool expectByte(char c, char want, Chunk next, const char* reason);
  bool chunkSizeByte(char c);
  bool chunkExtByte(char c);
  bool trailerNameByte(char c);
  bool trailerValueByte(char c);
  bool fail(const char* reason);
  void takeTrailers();
  BodyKind kind_ = BodyKind::kNone;
  State state_ = State::kDone;
  Chunk chunk_ = Chunk::kSize;
  uint64_t remaining_ = 0;
  uint64_t payload_ = 0;
  size_t line_len_ = 0;       // guards against endless size/extension/trailer lines
  size_t trailer_bytes_ = 0;  // guards against an endless trailer section
  bool size_digits_ = false;
  bool has_trailers_ = false;
  std::string trailer_text_;  // trailer lines seen, "name:value\n" each
  HttpHead trailers_;
  Error error_;
};

/// Appends "METHOD SP target SP HTTP/1.x CRLF", each field as "name: value CRLF", and the
/// final CRLF. Version is HTTP/1.1 when `version_minor` is 1.
void serializeRequestHead(const HttpHead& req, std::string& out);
/// Appends "HTTP/1.x SP status SP reason CRLF", fields, final CRLF. An empty reason is
/// replaced by reasonPhrase(status) (the SP stays when that is empty too). A status
/// outside 100..999 is written as 500. Neither function validates names or values: heads
/// edited by rules or scripts must be checked before they get here.
void serializeResponseHead(const HttpHead& resp, std::string& out);

/// Standard reason phrase for a status code ("OK", "Bad Request"), "" when unknown.
std::string_view reasonPhrase(int status);

/// True when the comma-separated token list `value` (e.g. a Connection field) contains
/// `token`, ASCII case-insensitive, ignoring optional whitespace.
bool hasToken(std::string_view value, std::string_view token);

/// Removes the hop-by-hop fields of RFC 9110 §7.6.1 before forwarding: every field named
/// in Connection, then Connection, Proxy-Connection, Keep-Alive, TE and Upgrade. With
/// `keep_upgrade` the Upgrade field stays even when Connection names it (adding
/// "Connection: upgrade" back is the caller's job). Transfer-Encoding is kept: the body
/// is forwarded with its framing. Content-Length, Transfer-Encoding and Host are never
/// removed even when Connection names them, so a peer cannot make the proxy strip the
/// framing of a message it forwards. Work is O(n log n) in the number of fields/tokens.
void removeHopByHop(HttpHead& head, bool keep_upgrade);

namespace detail {
/// Character classes shared by the codec's .cc files (RFC 9110 §5.6.2, §5.5; RFC 9112 §3).
enum CharClass : uint8_t {
  kTchar = 1,       ///< token character
  kValueChar = 2,   ///< field-value / reason-phrase byte: HTAB, SP, VCHAR, obs-text
  kTargetChar = 4,  ///< request-target byte: VCHAR or obs-text (no SP, CTL, DEL)
  kHexDigit = 8,
};
extern const uint8_t kCharClass[256];
inline bool isTchar(char c) {
  return kCharClass[static_cast<uint8_t>(c)] & kTchar;
}
inline bool isValueChar(char c) {
  return kCharClass[static_cast<uint8_t>(c)] & kValueChar;
}
inline bool isTargetChar(char c) {
  return kCharClass[static_cast<uint8_t>(c)] & kTargetChar;
}
inline bool isHexDigit(char c) {
  return kCharClass[static_cast<uint8_t>(c)] & kHexDigit;
}
}  // namespace detail

}  // namespace crescent::core::http1
