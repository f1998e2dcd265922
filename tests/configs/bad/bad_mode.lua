-- expect: bad_mode.lua:2: defaults: "mode" must be "http" or "tcp" (got "udp")
defaults { mode = "udp" }
