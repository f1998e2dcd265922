-- expect: not_an_acl.lua:5: frontend "f": use_backend "b": "when" must be an ACL (acl.*) (got string)
backend "b" {}
frontend "f" {
  bind { "127.0.0.1:8080" },
  use_backend { "b", when = "/api" },
}
