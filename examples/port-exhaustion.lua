-- port-exhaustion: connections to the servers leave from several local addresses in turn.
--
-- A connection is identified by its 4-tuple (source IP, source port, destination IP,
-- destination port). Towards one server, one source IP gives at most the size of the
-- ephemeral port range (net.ipv4.ip_local_port_range, ~28,000 by default) of
-- connections, counting those in TIME_WAIT. Each extra source address adds as many
-- again. See docs/port-exhaustion.md, and scripts/sysctl-check for the host's limits.
--
--   crescent -f examples/port-exhaustion.lua
--   curl http://127.0.0.1:8080/   -> "hello from the app, you came from 127.0.0.2"
--
-- crescent keeps that connection open and reuses it for the next requests; the next
-- connection it opens (e.g. for a request made while the first one is busy) comes from
-- 127.0.0.3, the one after that from 127.0.0.2 again, and so on.
--
-- Environment (defaults in brackets): CRESCENT_ADDR [127.0.0.1:8080], APP_ADDR
-- [127.0.0.1:9001], SOURCE1 [127.0.0.2], SOURCE2 [127.0.0.3]. On Linux every address of
-- 127.0.0.0/8 is local; elsewhere, use addresses configured on this host.

local app = "${APP_ADDR:-127.0.0.1:9001}"

global { threads = 1 }

defaults {
  mode = "http",
  timeout = { connect = "5s", client = "30s", server = "30s", http_request = "10s" },
}

frontend "public" {
  bind { "${CRESCENT_ADDR:-127.0.0.1:8080}" },
  default_backend = "app",
}

backend "app" {
  -- One address per new connection, in turn. The kernel picks the source port when
  -- connecting (IP_BIND_ADDRESS_NO_PORT), so each address has the whole ephemeral range
  -- towards each server. A fixed range instead: source = "10.0.0.5:20000-30000".
  source = { "${SOURCE1:-127.0.0.2}", "${SOURCE2:-127.0.0.3}" },
  server "app1" { app },
}

-- The application: a Lua service that tells where the connection came from.
listen "application" {
  bind { app },
  service = function(applet)
    local body = string.format("hello from the app, you came from %s\n", applet.src)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:add_header("content-length", tostring(#body))
    applet:start_response()
    applet:send(body)
  end,
}
