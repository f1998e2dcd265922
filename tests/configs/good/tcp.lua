-- TCP mode end to end.
defaults { mode = "tcp", timeout = { client = "1h", server = "1h", tunnel = "1h" } }

frontend "mysql" {
  bind { "127.0.0.1:3307" },
  use_backend { "replica", when = acl.dst_port(3308) },
  default_backend = "primary",
}

backend "primary" { server "db1" { "127.0.0.1:3306" } }
backend "replica" { server "db2" { "127.0.0.1:3309" } }
