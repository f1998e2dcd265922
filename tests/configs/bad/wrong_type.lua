-- expect: wrong_type.lua:4: backend "b": "retries" must be a number (got string)
backend "b" {
  server "s1" { "127.0.0.1:9001" },
  retries = "3",
}
