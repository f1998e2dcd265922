-- expect: mode_mismatch.lua:5: frontend "db": default_backend: backend "web" is in http mode but the frontend is in tcp mode
frontend "db" {
  mode = "tcp",
  bind { "127.0.0.1:3307" },
  default_backend = "web",
}

backend "web" {
  server "w1" { "127.0.0.1:9001" },
}
