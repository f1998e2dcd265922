#pragma once

#include <string>

namespace crescent::core::tls {

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
};

}  // namespace crescent::core::tls
