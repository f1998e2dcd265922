-- expect: listen_no_bind.lua:2: listen "app": no bind (add bind { ":8080" })
listen "app" {
  server "s1" { "127.0.0.1:9001" },
}
