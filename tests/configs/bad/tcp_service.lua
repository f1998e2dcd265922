-- expect: tcp_service.lua:4: backend "b": "service" needs mode = "http"
backend "b" {
  mode = "tcp",
  service = function(applet) end,
}
