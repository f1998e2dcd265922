-- expect: port_out_of_range.lua:3: backend "api": server "a1": invalid address "10.0.0.1:99999" (port out of range)
backend "api" {
  server "a1" { "10.0.0.1:99999" },
}
