-- The smallest useful configuration: one frontend, one backend, one server.
frontend "public" {
  bind { "127.0.0.1:8080" },
  default_backend = "servers",
}

backend "servers" {
  server "s1" { "127.0.0.1:9001" },
}
