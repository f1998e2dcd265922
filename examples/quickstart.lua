-- quickstart: crescent balances between two demo services that it serves itself.
--
--   scripts/demo                      (or: build/crescent -f examples/quickstart.lua)
--   curl http://127.0.0.1:8080/       -> "hello from demo 1", then "hello from demo 2", ...
--   curl http://127.0.0.1:8080/ping   -> "pong", answered by the frontend's hook
--
-- Addresses come from the environment, with defaults: CRESCENT_ADDR, DEMO1_ADDR,
-- DEMO2_ADDR. Edit this file, check it with `crescent -c -f examples/quickstart.lua`,
-- and start it again.

local demo1 = "${DEMO1_ADDR:-127.0.0.1:9001}"
local demo2 = "${DEMO2_ADDR:-127.0.0.1:9002}"

global {
  threads = 2,
}

defaults {
  mode = "http",
  timeout = { connect = "5s", client = "30s", server = "30s", http_request = "10s" },
  retries = 3,
  forwardfor = true,
}

-- The public side: one hook, then everything goes to the "servers" backend.
frontend "public" {
  bind { "${CRESCENT_ADDR:-127.0.0.1:8080}" },
  http_request = function(txn)
    if txn.req.path == "/ping" then
      return txn:reply(200, "pong\n")
    end
  end,
  default_backend = "servers",
}

backend "servers" {
  balance = "roundrobin",
  server "demo1" { demo1 },
  server "demo2" { demo2 },
}

-- Two demo services written in Lua, each a listen section (a frontend and a backend
-- in one) answered by a service function instead of a server.
local function demo_service(n)
  return function(applet)
    local body = string.format("hello from demo %d (%s %s)\n", n, applet.method, applet.path)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:add_header("content-length", tostring(#body))
    applet:start_response()
    applet:send(body)
  end
end

listen "demo1" {
  bind { demo1 },
  service = demo_service(1),
}

listen "demo2" {
  bind { demo2 },
  service = demo_service(2),
}
