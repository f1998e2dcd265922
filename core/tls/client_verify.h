#pragma once

// Client certificates on a bind (mTLS, `tls = { verify = ..., ca = ..., crl = ... }`) and
// the facts about a certificate that crescent shows (Lua's txn.tls.client, the runtime
// API's `show ssl cert`). Used by ServerContext (tls_context.cc) and Engine.

#include <openssl/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/base/status.h"
#include "core/config/config.h"
#include "core/tls/tls_info.h"

namespace crescent::core::tls {

/// Sets up `ctx` to ask for and check client certificates as `cfg.verify` says:
/// kRequired: SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, so a client without a
/// valid certificate fails the handshake with OpenSSL's alert (certificate_required,
/// unknown_ca, certificate_expired, certificate_revoked, ...); kOptional: SSL_VERIFY_PEER
/// with a callback that accepts any chain and keeps the first error as the verify
/// result (see clientCertOf()); kNone: nothing is asked. The CAs in `cfg.ca` are trusted
/// and announced to the client (CertificateRequest); the CRLs in `cfg.crl` are checked
/// against the client's leaf certificate (X509_V_FLAG_CRL_CHECK). The session id context
/// is a digest of the mode and of the CA and CRL contents, so a session (ticket) made on
/// a bind that verified less, or before the CRL changed, is not resumed here.
///
/// Errors (one line, no place): an unreadable, empty or malformed CA or CRL file,
/// `cannot load CA file "ca.pem": No such file or directory`; a CA certificate that has
/// expired, `CA file "ca.pem": certificate "CN=Old CA" expired on 2020-01-02T00:00:00Z`.
Status setupClientVerify(SSL_CTX* ctx, const TlsBindConfig& cfg);

/// The client's certificate on a finished server-side handshake (or the session it
/// resumed), or nullopt when it sent none. `verified` is SSL_get_verify_result() ==
/// X509_V_OK; otherwise `error` is X509_verify_cert_error_string() of that result.
std::optional<ClientCert> clientCertOf(SSL* ssl);

/// Whether `x`'s notAfter is in the past.
bool hasExpired(const X509* x);

/// A time as "2020-01-02T00:00:00Z" (UTC); "?" when it cannot be read.
std::string isoTime(const ASN1_TIME* t);

/// A name as RFC 2253 text (X509_NAME_print_ex with XN_FLAG_RFC2253).
std::string rfc2253(const X509_NAME* name);

/// What `show ssl cert` prints about one loaded certificate.
struct CertSummary {
  std::string subject;            ///< RFC 2253
  std::string issuer;             ///< RFC 2253
  std::vector<std::string> sans;  ///< "DNS:a.example", "IP:10.0.0.1", in certificate order
  std::string not_after;          ///< isoTime()
};
CertSummary summarize(X509* x);

}  // namespace crescent::core::tls
