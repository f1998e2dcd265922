-- expect: bad_cidr.lua:6: frontend "public": use_backend "b": acl.src: invalid CIDR "10.0.0.0/33"
backend "b" { server "s1" { "127.0.0.1:9001" } }

frontend "public" {
  bind { "127.0.0.1:8080" },
  use_backend { "b", when = acl.src("10.0.0.0/33") },
}
