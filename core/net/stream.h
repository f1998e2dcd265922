#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/base/buffer.h"
#include "core/base/bytes.h"
#include "core/net/address.h"
#include "core/net/event_loop.h"
#include "core/net/stream_filter.h"

namespace crescent::core {

class Stream;

/// Receives a Stream's events. Callbacks run on the loop thread; a handler may close
/// the stream (or destroy its StreamPtr) from inside any callback.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  /// `data` holds the bytes read (ownership passes to the handler).
  virtual void onStreamData(Stream& s, Buffer data) = 0;
  /// The peer shut down its write side (FIN).
  virtual void onStreamEof(Stream& s) = 0;
  /// A read, write or connect failed (libuv error code, negative errno).
  virtual void onStreamError(Stream& s, int uv_error) = 0;
  /// Queued output fell to the low-water mark after having exceeded the high-water mark.
  virtual void onStreamDrained(Stream& s) {}
  /// An outgoing connect() finished; status 0 on success.
  virtual void onStreamConnected(Stream& s, int status) {}
  /// The FIN requested by shutdown() left: every byte queued before it was written.
  /// Only after this may an owner close the stream without losing output.
  virtual void onStreamShutdownDone(Stream& s) {}
  /// The handshake of the filter given to startFilter() (TLS) finished: status 0, or it
  /// failed: a negative libuv error (UV_EPROTO: refused or broken, see tlsError();
  /// UV_EOF: the peer closed first; or the socket's read error). Called once, never from
  /// inside startFilter(). Before it, no onStreamData/onStreamEof/onStreamError is
  /// delivered (a write error during the handshake is reported here too); after a
  /// failure, nothing more is read.
  virtual void onStreamTlsReady(Stream& s, int status) {}
};

/// A TCP or UNIX stream socket (uv_tcp_t / uv_pipe_t) with pooled read buffers and
/// write queueing (DESIGN §2): reads take a chunk from the thread's BufferPool only when
/// data is there; writes try uv_try_write() first and queue the rest.
///
/// Lifetime: created with create(); owned through StreamPtr, whose deleter calls
/// close(). close() disarms the handler (no callback after it), closes the handle, and
/// the object deletes itself in the close callback — the only `delete this`.
///
/// Optional transport filter (TLS, DESIGN §7): after startFilter(), the socket carries
/// the filter's bytes (ciphertext) and the handler sees application bytes (plaintext):
/// onStreamData delivers decoded bytes, write() encodes into pooled buffers which go out
/// try-write-first then queued, shutdown() sends the closing notice then FIN, and
/// pendingBytes()/back-pressure count the encoded bytes queued. bytesIn()/bytesOut()
/// count bytes on the socket. A plain stream pays one branch per read and per write.
class Stream {
 public:
  enum class Kind { kTcp, kPipe };
  struct Closer {
    void operator()(Stream* s) const { s->close(); }
  };

  /// A new unconnected stream on `loop`. Never null (aborts on libuv init failure,
  /// which only happens on programming errors).
  static std::unique_ptr<Stream, Closer> create(EventLoop& loop, Kind kind);

  Kind kind() const { return kind_; }
  uv_stream_t* uv() { return reinterpret_cast<uv_stream_t*>(&h_); }
  EventLoop& loop() { return loop_; }
  void setHandler(StreamHandler* h) { handler_ = h; }

  /// Accepts a pending connection from `server` into this stream. 0 or a libuv error.
  int accept(uv_stream_t* server);
  /// Takes `fd`, a connected socket of this stream's kind (one accept4() returned, see
  /// Listener), as this fresh stream's socket. Returns 0, or a libuv error: then the fd
  /// is still the caller's to close. Never calls the handler.
  [[nodiscard]] int open(int fd);
  /// Binds a TCP stream's local end to `local` before connect(), for `source = ...`
  /// (docs/port-exhaustion.md). Creates the socket for `local`'s family (IPv4/IPv6),
  /// sets SO_REUSEADDR (an explicit port may serve several destinations at once and be
  /// bound again while its last connection is in TIME_WAIT: only the 4-tuple must be
  /// unique, which connect() checks) and, when `no_port` is true and `local` has port 0,
  /// Linux's IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port at connect() time
  /// for the whole 4-tuple instead of reserving one at bind() time for the address.
  /// Then bind(2), done here directly rather than through uv_tcp_bind(), which defers
  /// EADDRINUSE to the connect callback: here every error is reported synchronously.
  ///
  /// Accepts: a fresh TCP stream (no accept/connect/bindLocal yet) and an IP address.
  /// Returns 0, UV_EINVAL for a pipe stream, a non-IP address or a stream that already
  /// has a socket, or the libuv error (negative errno) of socket/setsockopt/bind, e.g.
  /// UV_EADDRINUSE for a taken port or UV_EADDRNOTAVAIL for an address not on this
  /// host. On failure no socket is left behind: the stream is as it was before the call.
  /// Once bound, a failed connect() leaves the port bound: retry on a new stream.
  /// Never calls the handler.
  [[nodiscard]] int bindLocal(const Address& local, bool no_port);
  /// Starts connecting to `addr` (IP or UNIX path); onStreamConnected reports the result.
  /// Not for abstract UNIX names (libuv 1.44 has no uv_pipe_connect2): see connectNow().
  int connect(const Address& addr);
  /// Connects a pipe stream to an abstract UNIX name (`unix:@name`) synchronously (a
  /// local connect completes at once or fails, e.g. ECONNREFUSED, EAGAIN when the
  /// listener's backlog is full). Returns 0 or a libuv error; never calls the handler —
  /// the caller reports the outcome on a later loop turn.
  int connectNow(const Address& addr);

  /// Puts `filter` (a TLS engine, see tls::startTls()) between the socket and the
  /// handler, and starts reading (the handshake needs the peer's bytes). `already_read`:
  /// bytes read from the socket before the call that belong to the filter (after a PROXY
  /// header); none are lost. The handshake's first step runs on a later loop turn, and
  /// onStreamTlsReady reports its end. Writes before that are kept and sent after it.
  /// Accepts: a connected or accepted stream without a filter. Returns 0, or UV_EINVAL
  /// (already filtered, closing, or null filter). Never calls the handler.
  [[nodiscard]] int startFilter(std::unique_ptr<StreamFilter> filter, Buffer already_read = {});
  /// The filter given to startFilter(), or null for a plain stream.
  StreamFilter* filter() const;
  /// True once the filter's handshake finished successfully.
  bool tlsReady() const;
  /// Why the filter's handshake or a later record failed (one line); empty otherwise.
  const std::string& tlsError() const;

  /// Starts/stops delivering onStreamData. Idempotent. With a filter, input already
  /// decoded-but-undelivered (a handler stopped reading in the middle) is delivered on a
  /// later loop turn after readStart(), even if the socket has nothing new.
  void readStart();
  void readStop();
  bool reading() const { return reading_; }

  /// Queues bytes for sending. Ownership of the buffer/string passes to the stream.
  /// Never reports synchronously, and never fails silently: a write libuv refuses at once
  /// (no socket: UV_EBADF; not writable: UV_EPIPE) or that a failed or closed filter
  /// cannot encode (UV_EPROTO; UV_EPIPE after shutdown()) reaches onStreamError on a later
  /// loop turn, whether or not the handler is reading; so does an error of a queued write.
  /// Failures before that report are covered by it (one report each time one is due).
  /// close() before the report cancels it.
  void write(Buffer data);
  void write(std::string data);
  /// Borrowed bytes are sent from where they are (no copy) and their keeper is held until
  /// the kernel has them; owned ones as write(std::string).
  void write(Bytes data);
  /// Queues `head` then `body` (e.g. a serialized HTTP head and the body bytes that came
  /// with it), sent with one writev when nothing is queued: one syscall, not two.
  void write(std::string head, Buffer body);
  /// Bytes accepted by write() and not yet handed to the kernel.
  size_t pendingBytes() const { return pending_; }
  /// Output above which callers should stop feeding this stream (back-pressure).
  bool aboveHighWater() const { return pending_ >= high_water_; }
  void setWaterMarks(size_t high, size_t low) {
    high_water_ = high;
    low_water_ = low;
  }

  /// Sends FIN once queued output is written. Idempotent.
  void shutdown();
  bool shutdownRequested() const { return shutdown_requested_; }
  /// True once the shutdown completed (or failed: the peer is gone, nothing to keep).
  bool shutdownDone() const { return shutdown_done_; }

  /// Loop time (ms) of the last read or completed write: for inactivity timeouts.
  uint64_t lastActivity() const { return last_activity_; }
  uint64_t bytesIn() const { return bytes_in_; }
  uint64_t bytesOut() const { return bytes_out_; }

  Address peerAddress() const;
  Address localAddress() const;
  void setNoDelay(bool on);

  /// Disarms the handler and closes the handle; the object frees itself afterwards.
  /// Queued writes are cancelled. Idempotent.
  void close();
  bool closing() const { return closing_; }

 private:
  Stream(EventLoop& loop, Kind kind);
  ~Stream();
  struct WriteReq;
  struct FilterState;

  static void onAllocCb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWriteCb(uv_write_t* req, int status);
  static void onConnectCb(uv_connect_t* req, int status);
  static void onShutdownCb(uv_shutdown_t* req, int status);
  static void onCloseCb(uv_handle_t* h);
  static void onIdleCb(uv_idle_t* h);
  static void onReportCb(uv_idle_t* h);
  // A write failed before reaching libuv's queue: onStreamError(uv_error) on a later turn.
  void reportLater(int uv_error);
  // Sends [p, p + n) now as far as the socket takes it and queues the rest, keeping what
  // holds the bytes: `b`, `s` or `x` (exactly one non-null; p points inside it).
  void queueWrite(const char* p, size_t n, Buffer* b, std::string* s, Bytes* x = nullptr);
  void startShutdown();
  // The filter path (stream.cc, "Transport filter").
  void filterInput(Buffer wire);
  void filterEof(int status);
  void filterPump();
  void filterDeliver();
  void filterReport(int status, std::string why);
  // Encodes through the filter; sends what it produced unless `flush` is false.
  void filterWrite(const char* p, size_t n, bool flush = true);
  void filterFlush();
  bool filterReadStart();
  void wrote(size_t n);
  Address endpoint(bool peer) const;

  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h_;
  EventLoop& loop_;
  Kind kind_;
  StreamHandler* handler_ = nullptr;
  Buffer read_buf_;  // the chunk lent to libuv between alloc and read callbacks
  size_t pending_ = 0;
  size_t high_water_ = 64 * 1024;
  size_t low_water_ = 16 * 1024;
  bool above_high_ = false;
  bool reading_ = false;
  bool closing_ = false;
  bool shutdown_requested_ = false;
  bool shutdown_started_ = false;
  bool shutdown_done_ = false;
  int writes_in_flight_ = 0;
  uint64_t last_activity_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  uv_connect_t connect_req_{};
  uv_shutdown_t shutdown_req_{};
  std::unique_ptr<FilterState> filter_;  // null: a plain stream
  // Delivers a synchronous write failure on a later turn; made on the first one only, so
  // a stream whose writes never fail carries one null pointer.
  std::unique_ptr<uv_idle_t> report_;
  int report_error_ = 0;  // what report_ delivers when it runs; 0: nothing due
  int open_handles_ = 1;  // the socket, the filter's idle handle, report_
};

using StreamPtr = std::unique_ptr<Stream, Stream::Closer>;

}  // namespace crescent::core
