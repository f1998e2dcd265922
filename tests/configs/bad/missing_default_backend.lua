-- expect: missing_default_backend.lua:4: frontend "public": default_backend: no backend named "nope"
frontend "public" {
  bind { "127.0.0.1:8080" },
  default_backend = "nope",
}
