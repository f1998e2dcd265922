-- expect: runtime_error.lua:4: attempt to index local 'settings' (a nil value)
local settings = nil

local port = settings.port
