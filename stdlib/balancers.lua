-- crescent.balancers: Lua balancers shipped with crescent, written with the same API a
-- user has (docs/lua-api.md "Balancers"). Each function returns a balancer{} object for
-- `balance = ...`; one object may serve several backends (each gets its own state).
--
--   local balancers = require "crescent.balancers"
--   backend "api"   { balance = balancers.least_response_time(), server ... }
--   backend "cache" { balance = balancers.chash_header("x-user", { load_factor = 1.25 }), ... }
--
-- State lives in each worker's Lua state: every worker learns response times from the
-- exchanges it sees itself.

local _M = {}

local type, error, format = type, error, string.format
local ceil, floor = math.ceil, math.floor
local sort = table.sort

local function opt(opts, key, kind, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= kind then
    error(format("%s must be a %s (got %s)", key, kind, type(v)), 3)
  end
  return v
end

-- Least response time: an exponentially weighted moving average (EWMA) of each
-- server's response time (ms from connect start to response head, or session length in
-- TCP mode), learned in on_release; pick takes the lowest (ewma + 1) * (current + 1) /
-- weight, so a fast server gets more traffic until its queue makes it as slow as the
-- others. Servers this worker has not measured yet start from the process-wide average
-- (server.response_time), or 0 so they get tried. A failed exchange counts as
-- `error_penalty` ms.
--   opts.decay          weight of a new sample, 0 < decay <= 1 (default 0.3)
--   opts.error_penalty  ms charged for a failed exchange (default 1000)
function _M.least_response_time(opts)
  opts = opts or {}
  local decay = opt(opts, "decay", "number", 0.3)
  if decay <= 0 or decay > 1 then error("decay must be in (0, 1]", 2) end
  local penalty = opt(opts, "error_penalty", "number", 1000)
  return balancer {
    name = opt(opts, "name", "string", "least-response-time"),
    init = function(backend)
      return { ewma = {} }
    end,
    pick = function(txn, servers, state)
      local ewma = state.ewma
      local best, best_score
      for i = 1, #servers do
        local s = servers[i]
        local rt = ewma[s]
        if rt == nil then rt = s.response_time end
        local score = (rt + 1) * (s.current + 1) / s.weight
        if best == nil or score < best_score then best, best_score = s, score end
      end
      return best
    end,
    on_release = function(server, result, state)
      local t = result.time
      if result.error and t < penalty then t = penalty end
      local old = state.ewma[server]
      state.ewma[server] = old and old + decay * (t - old) or t
    end,
  }
end

-- Consistent hashing on a request header with bounded loads (Mirrokni, Thorup and
-- Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2017): a key goes to the first
-- server clockwise from its hash on a ring, unless that server already has more than
-- load_factor times the average current load, in which case the walk goes on. Keys keep
-- their server while loads are even, and no server takes more than its bounded share.
-- Requests without the header return nil: the backend's roundrobin decides.
--   header             request header name (case-insensitive)
--   opts.load_factor   c > 1 (default 1.25): the bound is ceil(c * (total + 1) / n)
--   opts.points        ring points per unit of weight (default 40)
function _M.chash_header(header, opts)
  if type(header) ~= "string" or header == "" then
    error("chash_header: the first argument must be a header name", 2)
  end
  opts = opts or {}
  local factor = opt(opts, "load_factor", "number", 1.25)
  if factor <= 1 then error("chash_header: load_factor must be more than 1", 2) end
  local points = floor(opt(opts, "points", "number", 40))
  local hash = crescent.hash
  return balancer {
    name = opt(opts, "name", "string", "chash-" .. header),
    init = function(backend)
      local hashes, owners = {}, {}
      local ring = {}
      for _, s in ipairs(backend.servers) do
        for i = 1, points * s.weight do
          ring[#ring + 1] = { hash(s.name .. "#" .. i), s }
        end
      end
      sort(ring, function(a, b) return a[1] < b[1] end)
      for i, p in ipairs(ring) do hashes[i], owners[i] = p[1], p[2] end
      return { hashes = hashes, owners = owners, mark = {}, turn = 0 }
    end,
    pick = function(txn, servers, state)
      local req = txn.req
      local key = req and req:header(header)
      if key == nil then return nil end
      local n = #servers
      local hashes, owners = state.hashes, state.owners
      local size = #hashes
      if n == 0 or size == 0 then return nil end
      -- Mark this call's usable servers (a counter instead of a fresh table per call).
      local turn = state.turn + 1
      state.turn = turn
      local mark, total = state.mark, 0
      for i = 1, n do
        local s = servers[i]
        mark[s] = turn
        total = total + s.current
      end
      local bound = ceil(factor * (total + 1) / n)
      -- First point at or after the key's hash (binary search), then walk.
      local h = hash(key)
      local lo, hi = 1, size
      while lo < hi do
        local mid = floor((lo + hi) / 2)
        if hashes[mid] < h then lo = mid + 1 else hi = mid end
      end
      if hashes[lo] < h then lo = 1 end
      for k = 0, size - 1 do
        local s = owners[(lo - 1 + k) % size + 1]
        if mark[s] == turn and s.current < bound then return s end
      end
      return nil
    end,
  }
end

return _M
