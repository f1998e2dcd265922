#pragma once

#include <memory>

#include "core/base/buffer.h"
#include "core/net/address.h"
#include "core/proto/proxy_protocol.h"

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
  /// Bytes received after the PROXY header, before the session took over (the start of
  /// the first request, or of the TCP stream). Given to the session first.
  Buffer early;
};

}  // namespace crescent::core
