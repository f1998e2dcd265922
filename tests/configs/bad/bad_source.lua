-- expect: bad_source.lua:3: backend "b": server "s": source "10.0.0.300": expected an IP address, optionally with a port range ("127.0.0.2", "127.0.0.2:20000-30000")
backend "b" {
  server "s" { "127.0.0.1:8080", source = "10.0.0.300" },
}
