#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "core/base/buffer.h"
#include "core/base/bytes.h"
#include "core/net/stream.h"
#include "core/proto/http_head.h"

namespace crescent::core {

/// How a message body is delivered between the legs of an exchange, whatever the wire
/// framing was (HTTP/1 Content-Length or chunked, HTTP/2 DATA frames): nothing, a known
/// number of bytes, or a stream whose end is signalled.
struct BodyLength {
  enum class Kind { kNone, kLength, kStream };
  Kind kind = Kind::kNone;
  uint64_t length = 0;  ///< for kLength

  static BodyLength none() { return {}; }
  static BodyLength of(uint64_t n) { return {Kind::kLength, n}; }
  static BodyLength stream() { return {Kind::kStream, 0}; }
  bool empty() const { return kind == Kind::kNone || (kind == Kind::kLength && length == 0); }
};

/// What an Exchange needs from the client connection it belongs to (DESIGN §4: the
/// client connection's codec produces exchanges; HTTP/1 today, HTTP/2 next). The
/// exchange speaks in protocol-neutral terms: heads without hop-by-hop or framing fields
/// (a known length travels as BodyLength and as Content-Length), payload bytes, and the
/// end of each message; the codec frames them for its wire.
///
/// Every call is made on the connection's worker thread by its current exchange. None
/// re-enters the exchange synchronously except resumeRequestBody(), which may deliver
/// request body at once (Exchange::onRequestBody / onRequestEnd).
class ClientSide {
 public:
  virtual ~ClientSide() = default;

  /// The exchange takes request body payload now: the codec delivers what it has and
  /// what arrives (perhaps from inside this call) until pauseRequestBody() or the end.
  virtual void resumeRequestBody() = 0;
  /// Stop delivering request body (back-pressure, or the exchange waits on something).
  virtual void pauseRequestBody() = 0;
  /// The client waits for "100 Continue" before sending its body (HTTP/1.1 Expect), and
  /// nothing else will send it (a Lua service reads the body): send it now. No-op when
  /// the client did not ask or it was sent.
  virtual void continueRequest() = 0;

  /// The connection cannot carry another exchange after this one (its request body will
  /// not be read, an error...): the response says so (HTTP/1: Connection: close).
  virtual void mustClose() = 0;
  /// An interim response (1xx other than 101): forwarded when the client can take it.
  virtual void sendInterimResponse(const HttpHead& head) = 0;
  /// The final response head, framed for `body`, written together with `first` (body
  /// payload that is already at hand; may be empty). The head may still carry
  /// Content-Length for kLength (the codec makes it right); Transfer-Encoding and
  /// Connection-related fields are the codec's. With kNone and kLength the response ends
  /// by itself once that many bytes were sent; a kStream body ends with
  /// sendResponseEnd().
  virtual void sendResponseHead(HttpHead& head, BodyLength body, Buffer first) = 0;
  /// Same with a whole body crescent made or borrowed (local replies, Lua services): a
  /// borrowed one is sent from where it is.
  virtual void sendResponseHead(HttpHead& head, BodyLength body, Bytes first) = 0;
  /// More response payload.
  virtual void sendResponseData(Buffer data) = 0;
  /// The response body is complete (kStream; a no-op otherwise). `trailers`: trailer
  /// fields to send when the wire allows, or null.
  virtual void sendResponseEnd(const HttpHead* trailers) = 0;
  /// Response output is above the high-water mark: stop producing until
  /// Exchange::onClientDrained().
  virtual bool responseBlocked() const = 0;

  /// Loop time (ms) of the client connection's last read or write, and the bytes queued
  /// for it: for the exchange's `timeout client` while it waits on the client.
  virtual uint64_t clientLastActivity() const = 0;
  virtual size_t clientPendingBytes() const = 0;
  /// Bytes of the current exchange's response handed to the client's wire so far (head
  /// and body as framed), for the log.
  virtual uint64_t responseBytes() const = 0;

  /// After a 101 or a CONNECT 2xx: the client's stream, which the exchange now pumps to
  /// and from the server (a Tunnel), and in `pending` the client bytes received after
  /// the request (they go to the server first). Null when the codec cannot tunnel. The
  /// codec stops reading and processing; the stream stays owned by the connection.
  virtual Stream* startTunnel(std::deque<Buffer>& pending) = 0;

  /// The exchange is over: its log line is written and it released everything it held.
  /// `complete`: request and response both went through in full, so the connection may
  /// carry another exchange. Called once, as the exchange's last act: the connection may
  /// destroy the exchange from inside (deferred, the exchange is still on the stack).
  virtual void onExchangeEnd(bool complete) = 0;
};

}  // namespace crescent::core
