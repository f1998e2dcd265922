#pragma once

#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/base/status.h"
#include "core/config/config.h"
#include "core/tls/client_verify.h"

typedef struct ssl_session_st SSL_SESSION;  // as in <openssl/ssl.h>
struct stack_st_X509;                       // STACK_OF(X509), as in <openssl/x509.h>

namespace crescent::core::tls {

/// The TLS side of one bind (`bind { ":443", tls = { ... } }`, DESIGN §7): one SSL_CTX
/// with every certificate of the bind loaded. The first certificate is the default; the
/// others are chosen during the handshake by the name the client asks for (SNI), matched
/// against their names (SAN DNS entries, else the subject CN; `*.example.com` matches one
/// label). ALPN picks the bind's first protocol that the client offers (no common one:
/// no ALPN, the handshake goes on). Session tickets use the process's keys (rotated, see
/// rotateTicketKeys()). Client certificates are asked for and checked as the bind's
/// `verify`, `ca`, `crl` and `verify_depth` say (setupClientVerify()). An expired
/// certificate, or an expired certificate in `ca`, is refused when the context is built
/// (at `-c`, at start, at each reload: every file is read again each time).
///
/// Built once on the main thread, immutable afterwards, used by every worker thread to
/// create connections (OpenSSL's SSL_CTX allows that).
class ServerContext {
 public:
  /// Loads `cfg`'s certificates and settings. Errors are one line without the place,
  /// e.g. `cannot load certificate "x.pem": no start line`; the caller adds the place.
  static Result<std::unique_ptr<ServerContext>> create(const TlsBindConfig& cfg);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }
  /// The index (into the bind's certs) of the certificate served for `server_name`
  /// (case-insensitive, a trailing dot ignored); 0, the default, when none matches.
  size_t certFor(std::string_view server_name) const;
  /// The names a certificate answers to (lowercase), as matched by certFor().
  const std::vector<std::string>& certNames(size_t i) const { return certs_[i].names; }
  /// How many certificates the bind has (in config order), and what `show ssl cert`
  /// prints about one of them.
  size_t certCount() const { return certs_.size(); }
  const CertSummary& certSummary(size_t i) const { return certs_[i].summary; }

 private:
  struct Cert {
    X509* x509 = nullptr;
    EVP_PKEY* key = nullptr;
    STACK_OF(X509) * chain = nullptr;  // intermediates after the leaf, may be empty
    std::vector<std::string> names;
    CertSummary summary;
  };
  ServerContext() = default;
  Status load(const TlsBindConfig& cfg);
  static int onServerName(SSL* ssl, int* alert, void* arg);
  static int onAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                    const unsigned char* in, unsigned int inlen, void* arg);

  SSL_CTX* ctx_ = nullptr;
  std::vector<Cert> certs_;
  std::unordered_map<std::string, size_t> exact_;     // name -> cert index
  std::unordered_map<std::string, size_t> wildcard_;  // "example.com" for "*.example.com"
  std::string alpn_;                                  // wire format (length-prefixed)
};

/// The TLS side of one server (`server "s" { "10.0.0.1:443", tls = { ... } }`): one
/// SSL_CTX that verifies the server's certificate (CA file, else the system store) and
/// its name (`sni`, else the server's IP address), offers ALPN, presents a client
/// certificate when configured, and resumes the last session it saw.
///
/// Built once on the main thread; used by every worker thread (the session kept for
/// resumption is behind a mutex). An IP literal given as `sni` is verified as an IP and
/// not sent (SNI carries host names only).
class ClientContext {
 public:
  /// `server` is the server's address (its IP is verified when `cfg.sni` is empty).
  /// Errors are one line without the place, e.g. `cannot load CA file "ca.pem": ...`.
  static Result<std::unique_ptr<ClientContext>> create(const TlsServerConfig& cfg,
                                                       const Address& server);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }
  bool verify() const { return verify_; }
  /// The name sent (SNI) and verified; empty: none sent.
  const std::string& sni() const { return sni_; }
  /// The IP address verified when sni() is empty and the server is an IP; else empty.
  const std::string& verifyIp() const { return verify_ip_; }

  /// Offers the last session seen for sni() to `ssl` (no-op without one).
  void offerSession(SSL* ssl) const;

 private:
  ClientContext() = default;
  Status load(const TlsServerConfig& cfg, const Address& server);
  static int onNewSession(SSL* ssl, SSL_SESSION* session);

  SSL_CTX* ctx_ = nullptr;
  bool verify_ = true;
  std::string sni_;
  std::string verify_ip_;
  // The session kept for resumption lives in the SSL_CTX's ex_data (tls_context.cc), so
  // that it goes with the SSL_CTX's last reference, after every connection using it.
};

/// Every TLS context of one configuration: per TLS bind ([frontend][bind]) and per TLS
/// server ([backend][server]). Immutable once built; shared by the generation's users.
class Contexts {
 public:
  /// Null when that bind does not terminate TLS (or the indexes are out of range).
  const ServerContext* bind(size_t frontend, size_t bind) const;
  /// Null when that server does not use TLS (or the indexes are out of range).
  const ClientContext* server(size_t backend, size_t server) const;

 private:
  friend Result<std::shared_ptr<const Contexts>> buildContexts(const Config& config);
  std::vector<std::vector<std::unique_ptr<ServerContext>>> binds_;
  std::vector<std::vector<std::unique_ptr<ClientContext>>> servers_;
};

/// Builds the contexts of every TLS bind and TLS server of `config`. Certificate, key,
/// CA and settings errors are configuration errors naming the place:
/// `config.lua:12: frontend "f": bind: cannot load certificate "x.pem": no start line`,
/// `config.lua:20: backend "b": server "s": cannot load CA file "ca.pem": ...`.
/// Never null on success (empty when nothing uses TLS).
Result<std::shared_ptr<const Contexts>> buildContexts(const Config& config);

/// Session tickets are encrypted with keys of the process (not of a connection or of a
/// configuration generation, so tickets survive reloads): a new key every 12 hours,
/// the previous one still accepted (its tickets renewed). This starts a new key now.
/// Thread-safe.
void rotateTicketKeys();

/// The reason of the newest OpenSSL error on this thread's queue (e.g. "no start line"),
/// or `fallback`; clears the queue.
std::string takeOpensslError(std::string_view fallback);

}  // namespace crescent::core::tls
