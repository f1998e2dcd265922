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

/// Why a message was refused, with the status a proxy answers (400, 413, 414, 431, 501,
/// 505) and a short reason for the log line ("both Content-Length and Transfer-Encoding").
struct Error {
  int status = 400;
  std::string reason;
};

enum class ParseResult { kIncomplete, kComplete, kError };

/// Incremental parser of one message head (request line or status line, then fields,
/// up to and including the empty line).
///
/// Usage: the caller accumulates bytes in one contiguous buffer and calls parse*() with
/// the whole buffer each time more bytes arrive; the parser remembers how far it scanned,
/// so total work stays linear. On kComplete, `head` holds views into `buf` (zero-copy:
/// the buffer must outlive the head) and headLength() is the head's size in bytes; bytes
/// after it belong to the body or the next message. Call reset() before the next message.
///
/// Refused with 400: bare LF where CRLF is required, obs-fold (a line starting with SP
/// or HTAB), whitespace between a field name and its colon, an empty or invalid field
/// name (not a token), control characters in values, an invalid method token or
/// request-target, a malformed status line. Refused with 505: a version other than
/// HTTP/1.0 or HTTP/1.1. When the buffer reaches `max_head` bytes without a complete
/// head: 431 for requests (414 when still inside the request line), 502-worthy error for
/// responses (status 502). Leading empty lines before a request line are skipped
/// (RFC 9112 §2.2).
class HeadParser {
 public:
  explicit HeadParser(size_t max_head = 16384) : max_head_(max_head) {}
  ParseResult parseRequest(std::string_view buf, HttpHead& head, Error& err);
  ParseResult parseResponse(std::string_view buf, HttpHead& head, Error& err);
  size_t headLength() const { return head_len_; }
  void reset();

 private:
  ParseResult parse(std::string_view buf, HttpHead& head, Error& err, bool request);
  size_t max_head_;
  size_t scanned_ = 0;   // bytes known not to contain the end of the head
  size_t head_len_ = 0;
};

/// How a message body is delimited (RFC 9112 §6).
enum class BodyKind { kNone, kContentLength, kChunked, kUntilClose };

/// What a proxy needs to know about a parsed head beyond its fields.
struct Framing {
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;  ///< for kContentLength
  bool keep_alive = true;       ///< persistence per RFC 9112 §9.3 (version + Connection)
  bool upgrade = false;         ///< Connection: upgrade + Upgrade present (requests), or 101
  bool expect_continue = false; ///< request has Expect: 100-continue
};

/// Validates a request head and computes its framing. Errors (status 400 unless noted):
/// both Content-Length and Transfer-Encoding; several Content-Length values that differ
/// (identical repeats are accepted and folded); a Content-Length that is not 1*DIGIT or
/// overflows; a Transfer-Encoding whose final coding is not chunked (400), or any coding
/// other than chunked (501); Transfer-Encoding in an HTTP/1.0 request; a missing Host in
/// HTTP/1.1 or several Host fields.
bool analyzeRequest(const HttpHead& req, Framing& out, Error& err);

/// Computes a response's framing. `request_method` decides HEAD; `request_was_connect`
/// makes a 2xx a tunnel. 1xx, 204 and 304 have no body; neither has any response to HEAD.
/// Without Content-Length or chunked the body runs until close. Same Content-Length and
/// Transfer-Encoding rules as requests (an invalid one is an error; the proxy answers 502).
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

  /// Starts a new body. For kUntilClose the body ends only at finish().
  void reset(BodyKind kind, uint64_t content_length = 0);

  /// Consumes up to `len` bytes of `data`; returns how many belong to this body (fewer
  /// than `len` only when the body ended inside `data`). Payload bytes go to `sink` when
  /// non-null. After an error, state() is kError and error() says why (bad chunk size,
  /// missing CRLF, chunk size overflow, over-long chunk line or trailer).
  size_t feed(const char* data, size_t len, BodySink* sink = nullptr);

  /// The connection closed: completes a kUntilClose body; any other unfinished body
  /// becomes an error ("truncated body").
  void finish();

  State state() const { return state_; }
  bool done() const { return state_ == State::kDone; }
  const Error& error() const { return error_; }
  /// Payload bytes seen so far (chunk framing excluded).
  uint64_t payloadBytes() const { return payload_; }

 private:
  enum class Chunk { kSize, kExt, kSizeLf, kData, kDataCr, kDataLf, kTrailer, kTrailerLf, kLastCr };
  BodyKind kind_ = BodyKind::kNone;
  State state_ = State::kDone;
  Chunk chunk_ = Chunk::kSize;
  uint64_t remaining_ = 0;
  uint64_t payload_ = 0;
  size_t line_len_ = 0;  // guards against endless size/extension/trailer lines
  bool size_digits_ = false;
  Error error_;
};

/// Appends "METHOD SP target SP HTTP/1.x CRLF", each field as "name: value CRLF", and the
/// final CRLF. Version is HTTP/1.1 when `version_minor` is 1.
void serializeRequestHead(const HttpHead& req, std::string& out);
/// Appends "HTTP/1.x SP status SP reason CRLF", fields, final CRLF. An empty reason is
/// replaced by reasonPhrase(status).
void serializeResponseHead(const HttpHead& resp, std::string& out);

/// Standard reason phrase for a status code ("OK", "Bad Request"), "" when unknown.
std::string_view reasonPhrase(int status);

/// True when the comma-separated token list `value` (e.g. a Connection field) contains
/// `token`, ASCII case-insensitive, ignoring optional whitespace.
bool hasToken(std::string_view value, std::string_view token);

/// Removes the hop-by-hop fields of RFC 9110 §7.6.1 before forwarding: every field named
/// in Connection, then Connection, Proxy-Connection, Keep-Alive, TE and Upgrade. With
/// `keep_upgrade` the Upgrade field stays (adding "Connection: upgrade" back is the
/// caller's job). Transfer-Encoding is kept: the body is forwarded with its framing.
void removeHopByHop(HttpHead& head, bool keep_upgrade);

}  // namespace crescent::core::http1
