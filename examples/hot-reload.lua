-- hot-reload: change this file while crescent runs; nothing is restarted (docs/reload.md).
--
--   HOT_RELOAD_ADDR=127.0.0.1:8080 HOT_RELOAD_SOCKET=/tmp/crescent.sock \
--     crescent -f examples/hot-reload.lua
--   curl http://127.0.0.1:8080/          -> "version 1: request 1 since start"
--   (edit VERSION below and save: watch = true reloads it; or run
--    crescent reload -s /tmp/crescent.sock)
--   curl http://127.0.0.1:8080/          -> "version 2: request 2 since start"
--   crescent ctl -s /tmp/crescent.sock show generations
--
-- The request count lives in a shared dictionary, which the new generation finds again
-- by name; a Lua table would start afresh at each reload.

local VERSION = "1"

global {
  threads = 2,
  watch = true,              -- reload when this file changes
  hard_stop_after = "30s",   -- an old generation's last sessions get 30 s after a reload
  max_generations = 4,
  runtime = { socket = "${HOT_RELOAD_SOCKET:-/tmp/crescent-hot-reload.sock}", mode = "0600",
              expose_fd_listeners = true },   -- scripts/upgrade can take the sockets over
}

local stats = crescent.shared("hot-reload")

listen "web" {
  bind { "${HOT_RELOAD_ADDR:-127.0.0.1:8080}" },
  service = function(applet)
    local n = stats:incr("requests", 1, 0)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:start_response()
    applet:send(string.format("version %s: request %d since start\n", VERSION, n))
  end,
}

-- Runs in the new generation before it takes over; raising would refuse the reload.
on_reload(function(prev, next)
  log.info(string.format("generation %d -> %d: version %s", prev.id, next.id, VERSION))
end)
