-- A listen section answered by a Lua service.
listen "hello" {
  bind { "127.0.0.1:9001" },
  service = function(applet)
    local body = "hello " .. applet.path .. "\n"
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:start_response()
    applet:send(body)
  end,
}
