#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace crescent::core::tls {

/// The certificate a client presented on a bind with `verify` (mTLS), for Lua's
/// `txn.tls.client` and the PP2_TYPE_SSL TLV a `send_proxy = "v2"` server gets.
struct ClientCert {
  bool verified = false;  ///< the chain checked out against the bind's `ca` (and `crl`)
  long verify_code = 0;   ///< OpenSSL's X509_V_* result; 0 (X509_V_OK) when verified
  std::string error;      ///< X509_verify_cert_error_string() when not verified, else empty
  std::string subject;    ///< RFC 2253 (X509_NAME_print_ex, XN_FLAG_RFC2253)
  std::string issuer;     ///< RFC 2253
  std::string cn;         ///< the subject's commonName (UTF-8), empty when it has none
  std::string serial;     ///< uppercase hex, as `openssl x509 -serial` prints it
  std::string sha256;     ///< lowercase hex SHA-256 of the DER certificate
  int64_t not_before = 0, not_after = 0;  ///< validity, Unix seconds (UTC)
};

/// What a finished handshake agreed on (for logs, Lua's `txn.tls`, the PP2_TYPE_SSL,
/// PP2_TYPE_AUTHORITY and PP2_TYPE_ALPN TLVs of a PROXY v2 header sent to a server). A
/// plain value without OpenSSL types, so that session and Lua code can carry it.
struct Info {
  std::string version;   ///< "TLSv1.3", "TLSv1.2", ... (OpenSSL's SSL_get_version)
  std::string cipher;    ///< OpenSSL's name, e.g. "TLS_AES_256_GCM_SHA384"
  std::string sni;       ///< accept side: the name the client asked for; connect side:
                         ///< the name sent. Empty: none.
  std::string alpn;      ///< the protocol agreed by ALPN; empty: none
  bool resumed = false;  ///< an earlier session was resumed (ticket or session cache)
  /// Accept side with `verify` optional/required: the client's certificate (of this
  /// connection, or of the session it resumed); nullopt when it sent none.
  std::optional<ClientCert> client;
};

}  // namespace crescent::core::tls
