#pragma once

#include <memory>

#include "core/base/buffer.h"
#include "core/net/address.h"
#include "core/proto/proxy_protocol.h"
#include "core/session/hooks.h"
#include "core/tls/tls_info.h"

namespace crescent::core {

/// What the accept side learned about a client connection before its session began
/// (DESIGN §4: accept -> [PROXY header] -> [TLS handshake] -> session).
struct ConnectionInfo {
  /// The client's address: from the PROXY header when one was received with addresses
  /// (used everywhere: ACL `src`, logs, X-Forwarded-For, the next hop's PROXY header),
  /// else the socket's peer.
  Address src;
  /// The address the client connected to (PROXY header's destination, else local).
  Address dst;
  /// The PROXY header received (TLVs for Lua's txn.proxy), or null.
  std::shared_ptr<const proxy::Header> proxy;
  /// What the TLS handshake on this bind agreed on, when crescent terminated TLS for
  /// this connection (Lua's txn.tls; the SSL, AUTHORITY and ALPN TLVs a `send_proxy =
  /// "v2"` server gets when no received PROXY header carries them), or null: no TLS.
  std::shared_ptr<const tls::Info> tls;
  /// Bytes received after the PROXY header, before the session took over (the start of
  /// the first request, or of the TCP stream). Given to the session first.
  Buffer early;
  /// The tcp_request hook's txn (its txn.ctx): a TCP session keeps it for its balancer
  /// and log phases (ScriptTxn::rebind); null without the hook.
  std::unique_ptr<ScriptTxn> txn;
  /// TCP mode: the backend the tcp_request hook chose (conn:use_backend); empty: the
  /// frontend's rules.
  std::string backend;
};

}  // namespace crescent::core
