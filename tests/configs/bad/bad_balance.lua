-- expect: bad_balance.lua:3: backend "b": "balance" must be "roundrobin", "static-rr", "leastconn", "first", "source", "uri", "random", "url_param(name)" or "hdr(name)" (got "round-robin")
backend "b" {
  balance = "round-robin",
}
