-- Every key of every section (docs/config.md), with values that load.
global {
  threads = 2,
  maxconn = 20000,
  bufsize = "16k",
  hard_stop_after = "1h",
}

defaults {
  mode = "http",
  timeout = { connect = "5s", client = "30s", server = "30s", tunnel = "1h", queue = "10s",
              http_request = "10s", http_keep_alive = "5s", client_fin = "1s", server_fin = "1s" },
  retries = 3, redispatch = false, forwardfor = true, maxconn = 0,
  balance = "roundrobin", log = true,
}

local is_api = acl.path_beg("/api/", "/v1/") * -acl.method("TRACE")
local is_ws = acl.hdr("upgrade"):eq("websocket", { nocase = true })
local internal = acl.src("10.0.0.0/8", "::1") + acl.dst_port(8081, "9000-9100")

frontend "public" {
  bind { "127.0.0.1:8080" },
  bind { "[::1]:8080" },
  mode = "http", maxconn = 1000, forwardfor = true, log = true,
  timeout = { client = "1m30s", http_request = "5s" },
  http_request = function(txn)
    if txn.req.path == "/ping" then return txn:reply(200, "pong\n") end
  end,
  use_backend { "api", when = is_api },
  use_backend { "ws", when = acl.any(is_ws, acl.host("ws.example.com")) },
  use_backend { "internal", when = internal * acl.url_param("debug") },
  default_backend = "servers",
}

backend "servers" {
  mode = "http", balance = "leastconn", retries = 2, redispatch = true, forwardfor = false,
  timeout = { connect = "2s", server = "10s", tunnel = "1h" },
  server "web1" { "127.0.0.1:9001", weight = 10, maxconn = 32 },
  server "web2" { "${CRESCENT_GOOD_WEB2:-127.0.0.1:9002}", weight = 0 },
}

backend "api" { server "api1" { "unix:/run/crescent-test-api.sock" } }
backend "ws" { timeout = { tunnel = "30s" }, server "ws1" { "127.0.0.1:9100" } }
backend "internal" {}

backend "hello" {
  service = function(applet)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:send("hello\n")
  end,
}
