-- expect: weight_range.lua:3: backend "b": server "s1": "weight" must be between 0 and 256 (got 300)
backend "b" {
  server "s1" { "127.0.0.1:9001", weight = 300 },
}
