-- Reserved features: accepted and recorded, not used yet (balancer, on_reload).
local sticky = balancer {
  name = "sticky-user",
  pick = function(txn, servers) return servers[1] end,
}

backend "b" {
  balance = sticky,
  server "s1" { "127.0.0.1:9001" },
}

frontend "f" { bind { "127.0.0.1:8080" }, default_backend = "b" }

on_reload(function(prev, next) log.info("reload") end)
