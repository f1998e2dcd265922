-- env: configuration from the environment.
--
--   "${NAME}"             the variable's value; loading fails if it is not set
--   "${NAME:-default}"    the value, or the default when unset or empty
--   "${NAME:?message}"    the value; loading fails with this message when unset or empty
--   env("NAME")           the same from Lua code (fails when unset);
--   env("NAME", default)  the default when unset
--
-- Interpolation applies to every string value given to the configuration. A failure
-- names the variable and the line, and `crescent -c` reports it before anything runs.
--
--   ENV_DEMO_ADDR=127.0.0.1:8080 ENV_DEMO_APP_ADDR=127.0.0.1:9003 ENV_DEMO_SITE=blue \
--     crescent -f examples/env.lua
--   curl http://127.0.0.1:8080/   -> "hello from site blue"

local greeting = env("ENV_DEMO_GREETING", "hello")
local site = env("ENV_DEMO_SITE", "default")

global { threads = tonumber(env("ENV_DEMO_THREADS", "1")) }

defaults {
  mode = "http",
  timeout = { connect = "${ENV_DEMO_CONNECT_TIMEOUT:-5s}", client = "30s", server = "30s" },
}

frontend "public" {
  bind { "${ENV_DEMO_ADDR:?set ENV_DEMO_ADDR to the address to listen on, e.g. 127.0.0.1:8080}" },
  default_backend = "site",
}

backend "site" {
  server "app" { "${ENV_DEMO_APP_ADDR}" },
}

-- The application behind it: a Lua service on ENV_DEMO_APP_ADDR.
listen "app" {
  bind { "${ENV_DEMO_APP_ADDR}" },
  service = function(applet)
    local body = string.format("%s from site %s\n", greeting, site)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:add_header("content-length", tostring(#body))
    applet:start_response()
    applet:send(body)
  end,
}
