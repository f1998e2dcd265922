-- expect: servers_and_service.lua:4: backend "b": has both servers and a service (use one or the other)
backend "b" {
  server "s1" { "127.0.0.1:9001" },
  service = function(applet) end,
}
