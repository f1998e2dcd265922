-- expect: bad_balance.lua:3: backend "b": "balance" must be "roundrobin", "static_rr", "leastconn", "first", "source" or "random" (got "round-robin")
backend "b" {
  balance = "round-robin",
}
