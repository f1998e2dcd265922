-- expect: no_bind.lua:2: frontend "public": no bind (add bind { ":8080" })
frontend "public" {
  default_backend = "b",
}
backend "b" { server "s1" { "127.0.0.1:9001" } }
