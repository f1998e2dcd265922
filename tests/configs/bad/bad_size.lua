-- expect: bad_size.lua:2: global: "bufsize": invalid size "16q"
global { bufsize = "16q" }
