-- expect: raised_error.lua:3: refusing to start: no servers configured
local servers = {}
if #servers == 0 then error("refusing to start: no servers configured") end
