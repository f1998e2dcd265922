#pragma once

#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/buffer.h"
#include "core/net/stream_filter.h"
#include "core/tls/tls_info.h"

namespace crescent::core::tls {

class ServerContext;
class ClientContext;

/// One TLS connection as a sans-I/O engine (STYLE rule 7, DESIGN §7): OpenSSL driven
/// through a memory BIO of our own. Ciphertext goes in with input() (pooled buffers, no
/// copy until OpenSSL reads a record), plaintext comes out of read(), plaintext goes in
/// with write(), and the ciphertext to send is taken from takeOutput() as pooled buffers.
/// A record split across inputs is reassembled; input beyond what was decoded stays
/// kept. No socket, no loop: Stream drives it (core/net/stream.cc, as a StreamFilter),
/// and the tests drive two engines against each other in memory.
///
/// An idle engine holds no buffer (SSL_MODE_RELEASE_BUFFERS, input and output buffers
/// returned once consumed). Used on one thread; the contexts must outlive the engine
/// (the generation that holds them outlives its sessions' streams).
class Engine final : public StreamFilter {
 public:
  /// An engine for an accepted connection (it waits for the ClientHello).
  /// Null only when OpenSSL cannot allocate.
  static std::unique_ptr<Engine> accept(const ServerContext& ctx);
  /// An engine for a connection to a server: its first handshake() produces the
  /// ClientHello. `sni`: the name sent and verified; empty: the context's `sni` (which
  /// may be empty: no SNI, the server's IP is verified). Null only when OpenSSL cannot
  /// allocate.
  static std::unique_ptr<Engine> connect(const ClientContext& ctx, std::string_view sni = {});
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // StreamFilter (see there for the contract).
  void input(Buffer wire) override;
  bool hasInput() const override;
  Progress handshake() override;
  ReadResult read(Buffer& out) override;
  bool write(const char* p, size_t n) override;
  void close() override;
  void takeOutput(std::vector<Buffer>& out) override;
  const std::string& error() const override { return error_; }

  bool handshakeDone() const { return done_; }
  /// Filled when the handshake finished; empty fields before.
  const Info& info() const { return info_; }
  /// Bytes of output not yet taken.
  size_t outputBytes() const;
  /// True once the peer's close_notify was read.
  bool peerClosed() const { return peer_closed_; }

 private:
  explicit Engine(SSL* ssl);
  static int bioRead(BIO* b, char* buf, size_t len, size_t* readbytes);
  static int bioWrite(BIO* b, const char* buf, size_t len, size_t* written);
  static long bioCtrl(BIO* b, int cmd, long num, void* ptr);
  void fail(int ssl_error, const char* during);
  void fillInfo();

  SSL* ssl_;                // owns the BIO, which points back at this engine
  std::vector<Buffer> in_;  // ciphertext received, not yet read by OpenSSL, in order
  size_t in_bytes_ = 0;
  std::vector<Buffer> out_;  // ciphertext written by OpenSSL, not yet taken
  std::string error_;
  Info info_;
  std::string sni_sent_;
  bool done_ = false;
  bool failed_ = false;
  bool closed_ = false;  // close_notify written
  bool peer_closed_ = false;
};

}  // namespace crescent::core::tls
