-- websocket: WebSocket connections to their own backend, everything else to the web
-- servers. Once upgraded, a connection is a tunnel: `timeout.tunnel` replaces the
-- client and server timeouts and is reset by traffic in either direction, so it
-- closes a WebSocket after that long with no traffic at all, not that long after it
-- opened.
--
--   WS_ADDR=127.0.0.1:9100 WEB_ADDR=127.0.0.1:9001 crescent -f examples/websocket.lua
--
-- Environment (defaults in brackets): CRESCENT_ADDR [127.0.0.1:8080], WS_ADDR
-- [127.0.0.1:9100], WEB_ADDR [127.0.0.1:9001], WS_TUNNEL_TIMEOUT [1h].

defaults {
  mode = "http",
  timeout = { connect = "5s", client = "30s", server = "30s",
              http_request = "10s", http_keep_alive = "10s" },
  forwardfor = true,
}

-- An upgrade to WebSocket on a path under /websockets.
local is_websocket = acl.path_beg("/websockets")
                   * acl.hdr("upgrade"):eq("websocket", { nocase = true })

frontend "public" {
  bind { "${CRESCENT_ADDR:-127.0.0.1:8080}" },
  use_backend { "ws", when = is_websocket },
  default_backend = "web",
}

backend "ws" {
  timeout = { tunnel = "${WS_TUNNEL_TIMEOUT:-1h}" },
  server "ws1" { "${WS_ADDR:-127.0.0.1:9100}" },
}

backend "web" {
  server "web1" { "${WEB_ADDR:-127.0.0.1:9001}" },
}
