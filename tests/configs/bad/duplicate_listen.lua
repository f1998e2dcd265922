-- expect: duplicate_listen.lua:6: backend "app": duplicate backend name (listen "app" declared at line 2)
listen "app" {
  bind { "127.0.0.1:8080" },
  server "s1" { "127.0.0.1:9001" },
}
backend "app" {}
