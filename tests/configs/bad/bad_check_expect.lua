-- expect: bad_check_expect.lua:4: backend "b": "check.expect" must be a status (200), a list of them, "2xx", "200-299" or a function(res, server) (got "ok")
backend "b" {
  check = {
    expect = "ok",
  },
  server "s" { "127.0.0.1:8080", check = true },
}
