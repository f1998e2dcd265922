-- expect: unknown_key.lua:4: frontend "public": unknown key "maxcon" (did you mean "maxconn"?)
frontend "public" {
  bind { "127.0.0.1:8080" },
  maxcon = 100,
  default_backend = "servers",
}

backend "servers" {
  server "s1" { "127.0.0.1:9001" },
}
