-- Helpers required by ../modules.lua.
local M = {}

function M.local_addr(port) return "127.0.0.1:" .. port end

function M.tag_request(txn) txn.req:set_header("x-tagged", "1") end

return M
