-- expect: missing_backend.lua:4: frontend "public": use_backend: no backend named "x"
frontend "public" {
  bind { "127.0.0.1:8080" },
  use_backend { "x", when = acl.path_beg("/x") },
}
