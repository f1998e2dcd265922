#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/base/buffer.h"

namespace crescent::core {

/// A transport layer between a Stream's socket and its handler: TLS (core/tls). net is
/// the lowest layer and knows only this interface; core/tls implements it (tls::Engine)
/// and installs it with Stream::startFilter() (through tls::startTls()).
///
/// Sans-I/O (STYLE rule 7): the stream hands it the bytes read from the socket and the
/// bytes its handler writes; it hands back the bytes to deliver and the bytes to send.
/// It never touches the socket or the loop and never calls back into the stream.
/// Used on one thread (the stream's loop thread).
class StreamFilter {
 public:
  enum class Progress {
    kWant,    ///< the handshake needs more input
    kDone,    ///< the handshake finished: application data flows
    kFailed,  ///< the handshake failed: error() says why; output() may hold an alert
  };
  enum class ReadResult {
    kData,      ///< bytes were appended to the caller's buffer
    kNeedMore,  ///< no complete record is buffered
    kClosed,    ///< the peer closed the layer (TLS close_notify): like a FIN
    kFailed,    ///< fatal error (bad record, alert): error() says why
  };

  virtual ~StreamFilter() = default;

  /// Bytes read from the socket, kept until handshake()/read() consume them.
  /// Ownership of the buffer passes to the filter.
  virtual void input(Buffer wire) = 0;
  /// True while input is kept that read() (or handshake()) has not consumed yet.
  virtual bool hasInput() const = 0;
  /// Advances the handshake with the input received so far. After kDone or kFailed,
  /// returns the same value again.
  virtual Progress handshake() = 0;
  /// After the handshake: decodes application data into `out`'s tailroom (at most
  /// out.tailroom() bytes; `out` is a pooled buffer with room).
  virtual ReadResult read(Buffer& out) = 0;
  /// After the handshake: encodes `n` bytes of application data (all of them) into the
  /// output. False when the layer has failed or is closed (the bytes are dropped).
  virtual bool write(const char* p, size_t n) = 0;
  /// Encodes the closing notice (TLS close_notify) into the output. Idempotent; does
  /// nothing before the handshake finished or after a failure.
  virtual void close() = 0;
  /// Moves the bytes to send (handshake messages, records, alerts), in order, onto the
  /// end of `out`: pooled buffers, owned by the caller from now on.
  virtual void takeOutput(std::vector<Buffer>& out) = 0;
  /// Why the handshake, a read or a write failed: one line for logs. Empty otherwise.
  virtual const std::string& error() const = 0;
};

}  // namespace crescent::core
