-- expect: duplicate_server.lua:4: backend "b": server "s1": duplicate name (first declared at line 3)
backend "b" {
  server "s1" { "127.0.0.1:9001" },
  server "s1" { "127.0.0.1:9002" },
}
