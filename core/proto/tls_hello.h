#pragma once

// TLS ClientHello inspection, sans-I/O (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2; extensions
// server_name RFC 6066 §3, ALPN RFC 7301 §3.1, supported_versions RFC 8446 §4.2.1): what
// a proxy that does not terminate TLS can learn from a connection's first bytes
// (HAProxy's req.ssl_sni, req.ssl_alpn, req.ssl_hello_type).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace crescent::core::tls {

/// What the first bytes of a connection say about a TLS ClientHello.
struct ClientHello {
  enum class State {
    kNeedMore,  ///< the bytes so far are the start of a ClientHello: more are needed
    kHello,     ///< a complete ClientHello: the fields below are filled
    kNotTls,    ///< the bytes are not a TLS handshake (another protocol)
    kInvalid,   ///< a TLS handshake record, but not a well-formed ClientHello
  };
  State state = State::kNeedMore;
  std::string sni;                ///< server_name host_name, lower-cased; empty when none
  std::vector<std::string> alpn;  ///< protocols offered, in the client's order
  uint16_t version = 0;  ///< highest version offered (supported_versions, else the legacy field)
  std::string error;     ///< for kInvalid: what was wrong
};

/// Parses the ClientHello at the start of `data` (the connection's bytes from its first
/// one). Reassembles a ClientHello spread over several handshake records, up to 64 KiB.
/// The result depends only on the bytes, never on how they were split across reads, and
/// kNeedMore is returned only while the bytes are a valid prefix: a decision comes as
/// soon as one is possible.
ClientHello parseClientHello(std::string_view data);

}  // namespace crescent::core::tls
