-- offload-tls: HAProxy's TLS offloading recipe (reference/003) in one process.
--
--   client -> listen "tls" on worker 2 (TLS termination)
--          -> UNIX socket, PROXY protocol v2 with the TLS facts (SSL, authority, ALPN TLVs)
--          -> frontend "app" on worker 1 (accept_proxy: the real client and its TLS)
--          -> backend "servers"
--
--   TLS_CERT=site.pem WEB_ADDR=127.0.0.1:8081 build/crescent -f examples/offload-tls.lua
--   curl --cacert site.pem https://localhost:8443/tls-info   -> x-tls-version: TLSv1.3 ...
--   crescent ctl -s /tmp/crescent-offload-tls.sock show sess  -> worker=2 fe=tls, worker=1 fe=app
--
-- TLS_CERT is a PEM file holding the certificate chain and its private key, for instance
-- a self-signed one for localhost:
--   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
--     -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout k.pem -out c.pem
--   cat c.pem k.pem > site.pem
--
-- Addresses: CRESCENT_TLS_ADDR (the TLS listener), APP_SOCK (the UNIX socket between the
-- two workers), WEB_ADDR (the application server), RUNTIME_SOCK (the runtime API). Workers
-- are pinned to CPUs 0 and 1 (needs two CPUs).

global {
  threads = 2,
  cpu_map = { [1] = 0, [2] = 1 },
  runtime = { socket = "${RUNTIME_SOCK:-/tmp/crescent-offload-tls.sock}", mode = "0600" },
}

defaults {
  mode = "http",
  timeout = { connect = "2s", client = "30s", server = "30s", handshake = "5s" },
}

local sock = "${APP_SOCK:-/tmp/crescent-offload-tls-app.sock}"

-- The offload listener: TLS only, on its own worker. The PROXY v2 header it sends tells
-- the application frontend who the client is and what TLS it spoke (HAProxy's
-- send-proxy-v2-ssl, with the SNI as authority and the ALPN protocol).
listen "tls" {
  bind { "${CRESCENT_TLS_ADDR:-127.0.0.1:8443}", threads = { 2 },
         tls = { cert = "${TLS_CERT:-site.pem}", alpn = { "http/1.1" } } },
  server "app" { "unix:" .. sock, send_proxy = "v2",
                 proxy_v2_options = { "ssl", "authority", "alpn" } },
}

local format = string.format

-- The application frontend: rules and balancing, on worker 1. The PROXY header gives it
-- the client's own address (txn.src, X-Forwarded-For, the log) and, in txn.proxy, the
-- TLS facts of the listener's handshake.
frontend "app" {
  bind { "unix:" .. sock, accept_proxy = true, mode = "0600", threads = { 1 } },
  forwardfor = true,
  http_request = function(txn)
    local p = txn.proxy
    local ssl = p and p.ssl
    if txn.req.path == "/tls-info" then  -- what the TLS listener told this frontend
      return txn:reply(200, format("client %s:%d\n", txn.src, txn.src_port), {
        ["content-type"] = "text/plain",
        ["x-tls-version"] = ssl and ssl.version or "none",
        ["x-tls-cipher"] = ssl and ssl.cipher or "none",
        ["x-tls-sni"] = p and p.authority or "none",
        ["x-tls-alpn"] = p and p.alpn or "none",
      })
    end
    if ssl then txn.req:set_header("x-forwarded-proto", "https") end
  end,
  default_backend = "servers",
}

backend "servers" {
  server "web1" { "${WEB_ADDR:-127.0.0.1:8081}" },
}
