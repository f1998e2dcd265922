-- offload-compression: HAProxy's offloading recipe (reference/003) in one process.
--
--   client -> listen "compress" on worker 2 (gzip)
--          -> UNIX socket, PROXY protocol v2
--          -> frontend "app" on worker 1 (accept_proxy: the real client address)
--          -> backend "site"
--
--   build/crescent -f examples/offload-compression.lua
--   curl --compressed -v http://127.0.0.1:8080/    -> Content-Encoding: gzip
--
-- The site is a Lua service of this process so the example runs alone; put your servers
-- in backend "site". Addresses: CRESCENT_ADDR, APP_SOCK (the UNIX socket between the two
-- workers). Workers are pinned to CPUs 0 and 1 (needs two CPUs).

global {
  threads = 2,
  cpu_map = { [1] = 0, [2] = 1 },
}

defaults {
  mode = "http",
  timeout = { connect = "2s", client = "30s", server = "30s", handshake = "3s" },
}

local sock = "${APP_SOCK:-/tmp/crescent-offload-app.sock}"

-- The offload listener: compression only, on its own worker.
listen "compress" {
  bind { "${CRESCENT_ADDR:-127.0.0.1:8080}", threads = { 2 } },
  compression = { algo = { "gzip", "deflate" }, min_size = "1k", level = 6 },
  server "app" { "unix:" .. sock, send_proxy = "v2" },
}

-- The application frontend: rules and balancing, on worker 1. It sees the client's own
-- address (txn.src, X-Forwarded-For, logs) thanks to the PROXY header.
frontend "app" {
  bind { "unix:" .. sock, accept_proxy = true, mode = "0600", threads = { 1 } },
  forwardfor = true,
  default_backend = "site",
}

backend "site" {
  service = function(applet)
    local rows = {}
    for i = 1, 2000 do
      rows[i] = string.format("<tr><td>row %d</td><td>%s</td></tr>", i, applet.path)
    end
    local body = "<html><body><table>" .. table.concat(rows, "\n") .. "</table></body></html>\n"
    applet:set_status(200)
    applet:add_header("content-type", "text/html; charset=utf-8")
    applet:add_header("content-length", tostring(#body))
    applet:add_header("x-client", applet.src or "")
    applet:start_response()
    applet:send(body)
  end,
}
