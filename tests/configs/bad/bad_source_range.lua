-- expect: bad_source_range.lua:3: backend "b": server "s": source "127.0.0.2:3000-2000": the port range must be lo-hi with 1 <= lo <= hi <= 65535
backend "b" {
  server "s" { "127.0.0.1:8080", source = "127.0.0.2:3000-2000" },
}
