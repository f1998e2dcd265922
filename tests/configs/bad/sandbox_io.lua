-- expect: sandbox_io.lua:2: attempt to index global 'io' (a nil value)
local f = io.open("/etc/passwd")
