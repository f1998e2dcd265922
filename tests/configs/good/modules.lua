-- A config split into modules next to it (require looks in the config's directory).
local helpers = require "lib.helpers"

frontend "public" {
  bind { "127.0.0.1:8080" },
  http_request = helpers.tag_request,
  default_backend = "servers",
}

backend "servers" {
  server "s1" { helpers.local_addr(9001) },
}
