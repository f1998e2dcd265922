-- expect: duplicate_backend.lua:6: backend "b": duplicate name (first declared at line 2)
backend "b" {
  server "s1" { "127.0.0.1:9001" },
}

backend "b" {
  server "s1" { "127.0.0.1:9002" },
}
