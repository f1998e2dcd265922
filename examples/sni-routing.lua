-- sni-routing: TLS passed through untouched, routed by the name the client asks for.
-- The tcp_request hook reads the server name from the TLS ClientHello without
-- terminating TLS (HAProxy's req.ssl_sni); each backend holds its own certificates.
--
--   LISTEN=127.0.0.1:8443 A_SERVER=127.0.0.1:9443 B_SERVER=127.0.0.1:9444 \
--     crescent -f examples/sni-routing.lua
--   openssl s_client -connect 127.0.0.1:8443 -servername a.test   -> A's certificate
--   openssl s_client -connect 127.0.0.1:8443 -servername b.test   -> B's certificate
--
-- A connection with another name, no name, or that is not TLS at all is closed.

local routes = {
  ["a.test"] = "a",
  ["b.test"] = "b",
}

global { threads = tonumber(env("THREADS", "2")) }

defaults {
  mode = "tcp",
  timeout = { connect = "2s", client = "1m", server = "1m" },
}

frontend "tls" {
  bind { "${LISTEN:-127.0.0.1:8443}" },
  inspect_delay = "5s",  -- how long conn.sni waits for a complete ClientHello
  tcp_request = function(conn)
    local backend = conn.sni and routes[conn.sni]
    if not backend then
      log.info("no route for %s (sni %s)", conn.src, tostring(conn.sni))
      return conn:reject()
    end
    conn.ctx.sni = conn.sni
    conn:use_backend(backend)
  end,
  log = function(txn, info)
    return string.format("%s sni=%s %s/%s %s %d bytes %dms", txn.src, txn.ctx.sni or "-",
                         info.backend, info.server, info.termination, info.bytes, info.Ta)
  end,
}

backend "a" { server "a1" { "${A_SERVER:-127.0.0.1:9443}" } }
backend "b" { server "b1" { "${B_SERVER:-127.0.0.1:9444}" } }
