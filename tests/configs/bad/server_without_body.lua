-- expect: server_without_body.lua:3: backend "b": server "s1" has no body (write server "s1" { "host:port" })
backend "b" {
  server "s1",
}
