-- crescent.values: parsing of the DSL's value syntaxes.
--
--   duration(v)    number (ms) or "1500ms", "5s", "1m30s", "2h", "1d"  -> integer ms
--   size(v)        number (bytes) or "512", "16k", "4m", "1g"          -> integer bytes
--   interpolate(s) "${NAME}", "${NAME:-default}", "${NAME:?message}", "$${" -> string,
--                  whether it held a ${...}, and the names of the variables it referred to
--
-- Every function returns the value, or nil and an error message that names the
-- offending text (callers add the file:line and the object).

local _M = {}

local getenv = os.getenv
local floor = math.floor
local tonumber, type, tostring = tonumber, type, tostring
local find, sub, match, format, lower = string.find, string.sub, string.match, string.format,
  string.lower

local DURATION_UNITS = { ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000 }

-- Largest integer a double holds exactly; bigger durations/sizes are refused.
local MAX_EXACT = 2 ^ 53

local DURATION_HINT = 'e.g. 1500, "1500ms", "5s", "1m30s"; units ms, s, m, h, d'
local SIZE_HINT = 'e.g. 512, "16k", "4m"; suffixes k, m, g'

function _M.duration(v)
  if type(v) == "number" then
    if v ~= v or v < 0 or v >= MAX_EXACT then
      return nil, format("invalid duration %s (expected %s)", tostring(v), DURATION_HINT)
    end
    return floor(v + 0.5)
  end
  if type(v) ~= "string" then
    return nil, format("invalid duration (expected %s)", DURATION_HINT)
  end
  local bare = match(v, "^%s*(%d+%.?%d*)%s*$")
  if bare then return _M.duration(tonumber(bare)) end
  local total, pos, n = 0, 1, #v
  local any = false
  while pos <= n do
    local num, unit, stop = match(v, "^(%d+%.?%d*)(%a+)()", pos)
    if not num then break end
    local mult = DURATION_UNITS[unit]
    if not mult then break end
    total = total + tonumber(num) * mult
    pos, any = stop, true
  end
  if not any or pos <= n or total >= MAX_EXACT then
    return nil, format('invalid duration "%s" (expected %s)', v, DURATION_HINT)
  end
  return floor(total + 0.5)
end

local SIZE_UNITS = { [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 }

function _M.size(v)
  if type(v) == "number" then
    if v ~= v or v < 0 or v >= MAX_EXACT or v ~= floor(v) then
      return nil, format("invalid size %s (expected %s)", tostring(v), SIZE_HINT)
    end
    return v
  end
  if type(v) ~= "string" then return nil, format("invalid size (expected %s)", SIZE_HINT) end
  local num, unit = match(v, "^%s*(%d+%.?%d*)%s*(%a?)%s*$")
  local mult = num and SIZE_UNITS[lower(unit)]
  if not mult then return nil, format('invalid size "%s" (expected %s)', v, SIZE_HINT) end
  local bytes = tonumber(num) * mult
  if bytes ~= floor(bytes) or bytes >= MAX_EXACT then
    return nil, format('invalid size "%s" (expected %s)', v, SIZE_HINT)
  end
  return bytes
end

-- Looks a variable up; `lookup` may be replaced (tests) but defaults to os.getenv.
_M.lookup = getenv

-- Expands one "${...}" body (the text between the braces).
local function expand(body, whole)
  local name, op, arg = match(body, "^([%a_][%w_]*)(:?[-?]?)(.*)$")
  if not name or (op == "" and arg ~= "") or op == ":" then
    return nil, format('invalid variable reference "${%s}" in "%s" (expected ${NAME}, ' ..
      "${NAME:-default} or ${NAME:?message})", body, whole)
  end
  local value = _M.lookup(name)
  if op == "" then
    if value == nil then return nil, format('environment variable "%s" is not set', name) end
    return value
  end
  if value ~= nil and value ~= "" then return value end
  if op == ":-" then return arg end
  -- ":?"
  if arg == "" then return nil, format('environment variable "%s" is not set', name) end
  return nil, format('environment variable "%s" is not set: %s', name, arg)
end

-- Returns the string with every ${...} expanded, whether it contained any, and the list
-- of variable names it referred to (each once, in order of first use; a ${NAME:-default}
-- that fell back to its default still names NAME).
function _M.interpolate(s)
  if not find(s, "$", 1, true) then return s, false, {} end
  local out, pos, n, used, names, seen = {}, 1, #s, false, {}, {}
  while pos <= n do
    local dollar = find(s, "$", pos, true)
    if not dollar then
      out[#out + 1] = sub(s, pos)
      break
    end
    out[#out + 1] = sub(s, pos, dollar - 1)
    if sub(s, dollar, dollar + 2) == "$${" then
      out[#out + 1] = "${"
      pos = dollar + 3
    elseif sub(s, dollar + 1, dollar + 1) == "{" then
      local close = find(s, "}", dollar + 2, true)
      if not close then return nil, format('unterminated "${" in "%s"', s) end
      local body = sub(s, dollar + 2, close - 1)
      local value, err = expand(body, s)
      if not value then return nil, err end
      local name = match(body, "^[%a_][%w_]*")
      if not seen[name] then names[#names + 1], seen[name] = name, true end
      out[#out + 1] = value
      pos, used = close + 1, true
    else
      out[#out + 1] = "$"
      pos = dollar + 1
    end
  end
  return table.concat(out), used, names
end

return _M
