-- expect: bad_regex.lua:7: frontend "public": use_backend "b": acl.path_reg: invalid regex "a("
backend "b" { server "s1" { "127.0.0.1:9001" } }

frontend "public" {
  bind { "127.0.0.1:8080" },
  use_backend { "b", when = acl.path_beg("/api")
                          * acl.path_reg("a(") },
}
