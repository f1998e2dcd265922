-- expect: maxqueue_range.lua:3: backend "b": server "s": "maxqueue" must be between 0 and 2147483647 (got -1)
backend "b" {
  server "s" { "127.0.0.1:8080", maxqueue = -1 },
}
