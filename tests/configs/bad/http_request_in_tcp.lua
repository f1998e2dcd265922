-- expect: http_request_in_tcp.lua:5: frontend "f": "http_request" needs mode = "http"
frontend "f" {
  mode = "tcp",
  bind { "127.0.0.1:3307" },
  http_request = function(txn) end,
}
