-- custom-balancer: a balancer written in Lua, built from one that ships with crescent.
--
--   build/crescent -f examples/custom-balancer.lua
--   curl -H 'x-user: alice' http://127.0.0.1:8080/   -> always the same server for alice
--   curl -H 'x-server: api2' http://127.0.0.1:8080/  -> api2 (if it is up and not full)
--   curl http://127.0.0.1:8080/                      -> roundrobin
--
-- The servers are two demo services served by this same process (so the example runs
-- alone); point API1_ADDR / API2_ADDR elsewhere and replace the listen sections with your
-- own servers. Addresses: CRESCENT_ADDR, API1_ADDR, API2_ADDR.

local api1 = "${API1_ADDR:-127.0.0.1:9101}"
local api2 = "${API2_ADDR:-127.0.0.1:9102}"

defaults {
  mode = "http",
  timeout = { connect = "2s", client = "30s", server = "30s" },
  retries = 2, redispatch = true,
}

local balancers = require "crescent.balancers"

-- Consistent hashing on X-User with bounded loads: a user keeps their server unless it
-- already carries 1.25 times the average load.
local by_user = balancers.chash_header("x-user", { load_factor = 1.25 })

-- Our own balancer: X-Server names a server to use (when it is usable); otherwise the
-- user hash decides; with neither header pick returns nil and roundrobin decides.
-- `servers` holds only the usable servers (up, not draining, not full); each has name,
-- address, weight, current, queue, state and response_time.
local pin_or_user = balancer {
  name = "pin-or-user",
  init = function(backend)
    return { by_user = by_user.init(backend) }
  end,
  pick = function(txn, servers, state)
    local want = txn.req:header("x-server")
    if want then
      for _, s in ipairs(servers) do
        if s.name == want then return s end
      end
    end
    return by_user.pick(txn, servers, state.by_user)
  end,
}

frontend "public" {
  bind { "${CRESCENT_ADDR:-127.0.0.1:8080}" },
  default_backend = "api",
}

backend "api" {
  balance = pin_or_user,
  server "api1" { api1, maxconn = 100 },
  server "api2" { api2, maxconn = 100 },
}

-- The two demo servers.
local function demo(name)
  return function(applet)
    local body = string.format("%s %s\n", name, applet.path)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:add_header("content-length", tostring(#body))
    applet:start_response()
    applet:send(body)
  end
end

listen "api1" { bind { api1 }, service = demo("api1") }
listen "api2" { bind { api2 }, service = demo("api2") }
