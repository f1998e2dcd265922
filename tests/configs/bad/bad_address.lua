-- expect: bad_address.lua:3: frontend "public": bind: invalid address "127.0.0.1" (expected host:port)
frontend "public" {
  bind { "127.0.0.1" },
}
