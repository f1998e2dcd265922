#pragma once

#include <string_view>

#include "core/base/buffer.h"
#include "core/net/stream.h"
#include "core/tls/tls_engine.h"

namespace crescent::core::tls {

class ServerContext;
class ClientContext;

/// TLS on a Stream (the entry points the session pipeline uses, DESIGN §4 and §7): puts
/// a tls::Engine in the stream as its StreamFilter. The stream's handler gets
/// onStreamTlsReady(status) once, on a later loop turn at the earliest; afterwards it
/// reads and writes plaintext through the same Stream API, and Stream::tlsError() says
/// why a handshake failed. The context must outlive the stream's handshake (the
/// generation holding it outlives its sessions).

/// Accepted connection: waits for the ClientHello. `already_read`: bytes that arrived
/// before (after a PROXY header, ConnectionInfo::early), fed to the handshake first.
/// Returns 0, UV_EINVAL (the stream already has a filter or is closing) or UV_ENOMEM.
[[nodiscard]] int startTls(Stream& s, const ServerContext& ctx, Buffer already_read = {});

/// Connection to a server, once connected (after a PROXY header written, which goes out
/// first): sends the ClientHello. `sni`: the name sent and verified; empty: the
/// context's (`tls.sni`, else none and the server's IP is verified).
/// Returns 0, UV_EINVAL or UV_ENOMEM.
[[nodiscard]] int startTls(Stream& s, const ClientContext& ctx, std::string_view sni = {});

/// What the handshake agreed on; null when the stream has no TLS or it is not done yet.
const Info* tlsInfo(const Stream& s);

}  // namespace crescent::core::tls
