-- expect: entry_in_wrong_section.lua:4: frontend "f": server entries are not allowed here (expected bind, use_backend entries)
frontend "f" {
  bind { "127.0.0.1:8080" },
  server "s1" { "127.0.0.1:9001" },
}
