-- crescent.schema: the keys each DSL section accepts, their types and ranges, and the
-- checks that normalize a value (durations to ms, sizes to bytes). docs/config.md's "Keys
-- per section" lists the same keys, and tests/integration/test_docs.py reads the tables
-- exported here to hold the two in step.
--
-- check(spec, key, value, used) returns the normalized value, or nil, an error message
-- (without file:line or object) and, for nested tables, the sub-key at fault. `used`
-- maps each key whose string contained a ${...} to the names of its variables: such a
-- string may stand for a number or a boolean ("${THREADS:-2}"); a plain "2" may not. An
-- error about such a value names the value and its variables:
-- '"threads" must be a number, got "2x" (from ${THREADS})'.

local values = require "crescent.values"
local acl = require "crescent.acl"

local _M = {}

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local format, concat, sort = string.format, table.concat, table.sort
local floor, min = math.floor, math.min

local BALANCER  -- the tag crescent.config puts on balancer{} objects

function _M.setBalancerTag(tag) BALANCER = tag end

local INT_MAX = 2147483647

local function int(lo, hi) return { t = "int", min = lo, max = hi } end
local BOOL = { t = "bool" }
local DURATION = { t = "duration" }
local FUNC = { t = "function" }
-- `log = false` (no traffic log line) or `log = function(txn, info)` (the log phase)
local LOG = { t = "log" }
local MODE = { t = "enum", values = { "http", "tcp" } }
local TIMEOUT = {
  t = "table", what = "timeout", keys = {
    connect = DURATION, client = DURATION, server = DURATION, tunnel = DURATION,
    queue = DURATION, http_request = DURATION, http_keep_alive = DURATION,
    client_fin = DURATION, server_fin = DURATION, handshake = DURATION,
  },
}
local STRINGS = { t = "strings" }
local TLS_VERSION = { t = "enum", values = { "1.0", "1.1", "1.2", "1.3" } }
-- bind { ..., tls = { cert = "site.pem", key = "site.key", certs = { ... }, alpn = {...} } }
local BIND_TLS = { t = "table", what = "tls", keys = {
  cert = { t = "string" }, key = { t = "string" }, certs = { t = "certs" }, alpn = STRINGS,
  min_version = TLS_VERSION, ciphers = { t = "string" }, ciphersuites = { t = "string" },
  tickets = BOOL,
  -- client certificates (mTLS): verify them against `ca`, revocations in `crl`
  verify = { t = "enum", values = { "required", "optional", "none" } }, ca = { t = "string" },
  crl = { t = "string" }, verify_depth = int(0, 100),
} }
-- server "s" { ..., tls = { verify = "required", ca = "ca.pem", sni = "name" } }
local SERVER_TLS = { t = "server_tls", keys = {
  verify = { t = "enum", values = { "required", "none" } }, ca = { t = "string" },
  sni = { t = "string" }, alpn = STRINGS, cert = { t = "string" }, key = { t = "string" },
  min_version = TLS_VERSION,
} }
local COMPRESSION = { t = "table", what = "compression", keys = {
  algo = { t = "strings", values = { "gzip", "deflate" } }, types = STRINGS,
  min_size = { t = "size", min = 0, max = 1024 ^ 3 }, level = int(1, 9),
} }
-- HAProxy's algorithms (static-rr also as static_rr); url_param and hdr take their
-- argument in parentheses: "hdr(x-user)", "url_param(id)". core/backend implements them.
local BALANCE = { t = "balance", values = { "roundrobin", "static-rr", "leastconn", "first",
                                            "source", "uri", "random", "url_param(name)",
                                            "hdr(name)" } }
local HASH_TYPE = { t = "enum", values = { "map-based", "consistent" } }
-- pool = { idle_timeout = "3s", max_idle = 64 }: idle server connections kept per worker
local POOL = { t = "table", what = "pool", keys = {
  idle_timeout = DURATION, max_idle = int(0, 1000000),
} }
local HTTP_REUSE = { t = "enum", values = { "never", "safe", "always" } }
local SOURCE = { t = "source" }
-- Health check settings (HAProxy's check, inter, fastinter, downinter, rise, fall,
-- observe, error-limit; http-check send/expect).
local CHECK_KEYS = {
  http = { t = "check_http" }, send = { t = "string" }, host = { t = "string" },
  expect = { t = "expect" }, expect_body = { t = "string" },
  inter = DURATION, fastinter = DURATION, downinter = DURATION, timeout = DURATION,
  rise = int(1, 1000), fall = int(1, 1000), port = int(1, 65535),
  observe = { t = "enum", values = { "layer4", "layer7" } }, error_limit = int(1, 100000),
  -- protocol checks (HAProxy's mysql-check, pgsql-check, redis-check, smtpchk)
  type = { t = "enum", values = { "tcp", "http", "mysql", "pgsql", "redis", "smtp" } },
  user = { t = "string" }, domain = { t = "string" },
}
local CHECK = { t = "table", what = "check", keys = CHECK_KEYS }
-- errorfiles = { [503] = "errors/503.http", ... }: HAProxy's errorfile, for the statuses
-- crescent answers itself (the files are read and checked in lua/config_builder.cc).
local ERRORFILES = { t = "errorfiles", statuses = { 400, 403, 404, 405, 407, 408, 410, 413,
  414, 421, 425, 429, 431, 500, 501, 502, 503, 504, 505 } }
local SERVER_CHECK = { t = "check", keys = CHECK_KEYS }
-- HAProxy's agent-check, agent-port, agent-inter, agent-send, agent-addr
local AGENT = { t = "table", what = "agent", keys = {
  port = int(1, 65535), inter = DURATION, send = { t = "string" }, addr = { t = "string" },
} }

_M.global = {
  cpu_map = { t = "cpu_map" },
  threads = int(0, 1024),
  maxconn = int(0, INT_MAX),
  bufsize = { t = "size", min = 1024, max = 1024 ^ 3 },
  hard_stop_after = DURATION,
  -- watchdog = "2s": a worker whose loop has not turned that long is stuck;
  -- on_stuck = "abort" (the default) or "log" says what then
  watchdog = DURATION,
  on_stuck = { t = "enum", values = { "abort", "log" } },
  max_generations = int(0, 1000),
  watch = BOOL,
  lua_jit = BOOL,
  -- global { tune = { max_headers = 101 } }: HAProxy's tune.http.maxhdr
  -- tune.max_service_body / body_budget: request bodies Lua services gather in memory
  tune = { t = "table", what = "tune", keys = {
    max_headers = int(1, 32767),
    max_service_body = { t = "size", min = 0, max = 1024 ^ 4 },
    body_budget = { t = "size", min = 0, max = 1024 ^ 4 },
  } },
  -- lua = { maxmem = "256m", budget = "1s", max_timers = 1024 }: each Lua state's limits
  lua = { t = "table", what = "lua", keys = {
    maxmem = { t = "size", min = 0, max = 1024 ^ 4 }, budget = DURATION,
    max_timers = int(1, 1000000),
  } },
  -- global { runtime = { socket = "/run/crescent.sock", mode = "0600",
  --                      expose_fd_listeners = true } }: the runtime API (docs/reload.md)
  runtime = { t = "table", what = "runtime", keys = {
    socket = { t = "string" }, mode = { t = "string" }, expose_fd_listeners = BOOL,
  } },
}

_M.defaults = {
  mode = MODE, timeout = TIMEOUT, retries = int(0, 100), redispatch = BOOL,
  forwardfor = BOOL, maxconn = int(0, INT_MAX), balance = BALANCE, log = BOOL,
  hash_type = HASH_TYPE, check = CHECK, source = SOURCE, compression = COMPRESSION,
  pool = POOL, http_reuse = HTTP_REUSE, errorfiles = ERRORFILES, error_page = FUNC,
}

_M.frontend = {
  mode = MODE, timeout = TIMEOUT, maxconn = int(0, INT_MAX), forwardfor = BOOL, log = LOG,
  http_request = FUNC, http_response = FUNC, default_backend = { t = "string" },
  compression = COMPRESSION, tcp_request = FUNC, inspect_delay = DURATION,
  errorfiles = ERRORFILES, error_page = FUNC,
}

_M.backend = {
  mode = MODE, timeout = TIMEOUT, balance = BALANCE, retries = int(0, 100), redispatch = BOOL,
  forwardfor = BOOL, service = FUNC, hash_type = HASH_TYPE, check = CHECK, source = SOURCE,
  compression = COMPRESSION, http_response = FUNC, pool = POOL, http_reuse = HTTP_REUSE,
  errorfiles = ERRORFILES, error_page = FUNC, agent = AGENT,
}

_M.listen = {}
for k, v in pairs(_M.frontend) do _M.listen[k] = v end
for k, v in pairs(_M.backend) do _M.listen[k] = v end
_M.listen.default_backend = nil

_M.server = {
  weight = int(0, 256), maxconn = int(0, INT_MAX), maxqueue = int(0, INT_MAX), backup = BOOL,
  slowstart = DURATION, check = SERVER_CHECK, source = SOURCE,
  send_proxy = { t = "enum", values = { "v1", "v2" } },
  proxy_v2_options = { t = "strings", values = { "ssl", "authority", "alpn", "unique_id",
                                                  "crc32c" } },
  tls = SERVER_TLS, agent = AGENT,
}
_M.bind = {
  accept_proxy = BOOL, mode = { t = "string" }, user = { t = "string" },
  group = { t = "string" }, tls = BIND_TLS, threads = { t = "ints", min = 1, max = 1024 },
}
_M.use_backend = { when = { t = "acl" } }
-- admin { bind { "127.0.0.1:8404" }, auth = { users = { ops = "$6$..." }, tokens = { ... },
--         read_only = { "viewer" } }, metrics = { prefix = "crescent" } }: the admin
-- listener (docs/observability.md); users' passwords are crypt(3) hashes
_M.admin = {
  auth = { t = "table", what = "auth", keys = {
    users = { t = "crypt_users" }, tokens = STRINGS, read_only = STRINGS,
  } },
  metrics = { t = "table", what = "metrics", keys = { prefix = { t = "metric_prefix" } } },
  timeout = TIMEOUT, maxconn = int(0, INT_MAX),
}
_M.balancer = { name = { t = "string" }, pick = FUNC, init = FUNC, on_release = FUNC }

_M.entries = {
  frontend = { bind = true, use_backend = true },
  backend = { server = true },
  listen = { bind = true, use_backend = true, server = true },
  admin = { bind = true },
}

-- Messages ---------------------------------------------------------------------------

local function typeName(v)
  local t = type(v)
  if t == "table" and acl.is_acl(v) then return "acl" end
  return t
end

local function typeError(key, want, v)
  return format('"%s" must be %s (got %s)', key, want, typeName(v))
end

function _M.describe(v)
  if type(v) == "string" then return format('value "%s"', v) end
  if type(v) == "function" then
    return 'function (a server "x" or section without its { ... } body?)'
  end
  return typeName(v) .. " value"
end

function _M.entryHint(allowed)
  local kinds = {}
  for k in pairs(allowed) do kinds[#kinds + 1] = k end
  sort(kinds)
  if #kinds == 0 then return "no positional values are allowed here" end
  return "expected " .. concat(kinds, ", ") .. " entries"
end

-- Edit distance, for "did you mean" hints.
local function distance(a, b)
  local la, lb = #a, #b
  if math.abs(la - lb) > 2 then return 3 end
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[lb]
end

local function suggest(key, keys)
  local best, bestd
  local names = {}
  for k in pairs(keys) do names[#names + 1] = k end
  sort(names)
  for _, k in ipairs(names) do
    local d = distance(key, k)
    if d <= 2 and (not bestd or d < bestd) then best, bestd = k, d end
  end
  return best
end

function _M.unknownKey(key, keys, allowed, prefix)
  local shown = (prefix or "") .. key
  if allowed and allowed[key] then
    return format('"%s" is written as an entry: %s { ... }', key, key)
  end
  local s = suggest(key, keys)
  if s then return format('unknown key "%s" (did you mean "%s%s"?)', shown, prefix or "", s) end
  return format('unknown key "%s"', shown)
end

-- Checks -----------------------------------------------------------------------------

local checks = {}

function checks.int(spec, key, v, used)
  if type(v) == "string" and used[key] and tonumber(v) then v = tonumber(v) end
  if type(v) ~= "number" then return nil, typeError(key, "a number", v) end
  if v ~= floor(v) then return nil, format('"%s" must be an integer (got %s)', key, tostring(v)) end
  if v < spec.min or v > spec.max then
    return nil, format('"%s" must be between %d and %d (got %s)', key, spec.min, spec.max,
      tostring(v))
  end
  return v
end

function checks.bool(spec, key, v, used)
  if type(v) == "string" and used[key] then
    if v == "true" then return true elseif v == "false" then return false end
  end
  if type(v) ~= "boolean" then return nil, typeError(key, "a boolean", v) end
  return v
end

function checks.log(spec, key, v, used)
  if type(v) == "function" then return v end
  if type(v) == "string" and used[key] then return checks.bool(spec, key, v, used) end
  if type(v) ~= "boolean" then return nil, typeError(key, "a boolean or a function", v) end
  return v
end

function checks.string(spec, key, v)
  if type(v) ~= "string" then return nil, typeError(key, "a string", v) end
  if v == "" then return nil, format('"%s" must not be empty', key) end
  return v
end

local function enumText(list)
  local q = {}
  for i, s in ipairs(list) do q[i] = '"' .. s .. '"' end
  if #q == 1 then return q[1] end
  return concat(q, ", ", 1, #q - 1) .. " or " .. q[#q]
end

function checks.enum(spec, key, v)
  if type(v) ~= "string" then return nil, typeError(key, "a string", v) end
  for _, s in ipairs(spec.values) do if s == v then return v end end
  return nil, format('"%s" must be %s (got "%s")', key, enumText(spec.values), v)
end

function checks.balance(spec, key, v)
  if type(v) == "table" and BALANCER and v[BALANCER] then return v end
  if type(v) ~= "string" then
    return nil, typeError(key, "an algorithm name or a balancer { ... }", v)
  end
  if v == "static_rr" then return "static-rr" end
  local fn, arg = v:match("^([%w_]+)%(%s*([^%s%(%)]+)%s*%)$")
  if fn == "url_param" or fn == "hdr" then return v end
  if fn then
    return nil, format('"%s": only url_param(name) and hdr(name) take an argument (got "%s")',
      key, v)
  end
  if v == "url_param" or v == "hdr" then
    return nil, format('"%s": %s needs its argument: "%s(name)"', key, v, v)
  end
  return checks.enum(spec, key, v)
end

-- A source address, or a list of them, each "ip" or "ip:lo-hi" (checked in C++).
function checks.source(spec, key, v)
  if type(v) == "string" then
    if v == "" then return nil, format('"%s" must not be empty', key) end
    return { v }
  end
  if type(v) ~= "table" or acl.is_acl(v) then
    return nil, typeError(key, 'an address ("127.0.0.2") or a list of them', v)
  end
  local n = #v
  if n == 0 then return nil, format('"%s" must list at least one address', key) end
  for k, a in pairs(v) do
    if type(k) ~= "number" or k % 1 ~= 0 or k < 1 or k > n then
      return nil, format('"%s" must be a list of addresses (got key [%s])', key, tostring(k))
    end
    if type(a) ~= "string" or a == "" then
      return nil, format('"%s"[%d] must be an address string (got %s)', key, k, typeName(a))
    end
  end
  return v
end

-- What a health check accepts: a status (200), a list of statuses ({ 200, 204 }), a
-- class or range ("2xx", "200-299"), or a function(res, server) returning true when up.
function checks.expect(spec, key, v)
  local function range(x)
    if type(x) == "number" then
      if x % 1 ~= 0 or x < 100 or x > 599 then return nil end
      return { x, x }
    end
    if type(x) ~= "string" then return nil end
    local c = x:match("^([1-5])xx$")
    if c then return { c * 100, c * 100 + 99 } end
    local lo, hi = x:match("^(%d%d%d)%-(%d%d%d)$")
    lo, hi = tonumber(lo), tonumber(hi)
    if lo and lo >= 100 and hi <= 599 and lo <= hi then return { lo, hi } end
    return nil
  end
  if type(v) == "function" then return v end
  local bad = format('"%s" must be a status (200), a list of them, "2xx", "200-299" or a ' ..
    "function(res, server) (got %s)", key, type(v) == "string" and ('"' .. v .. '"') or typeName(v))
  if type(v) == "table" and not acl.is_acl(v) then
    local out = {}
    for i = 1, #v do
      local r = range(v[i])
      if not r then return nil, bad end
      out[#out + 1] = r
    end
    if #out == 0 then return nil, bad end
    return out
  end
  local r = range(v)
  if not r then return nil, bad end
  return { r }
end

-- A list of strings (or one string), each among spec.values when given.
function checks.strings(spec, key, v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or acl.is_acl(v) then return nil, typeError(key, "a list of strings", v) end
  local n = #v
  for k, x in pairs(v) do
    if type(k) ~= "number" or k % 1 ~= 0 or k < 1 or k > n then
      return nil, format('"%s" must be a list (got key [%s])', key, tostring(k))
    end
    if type(x) ~= "string" or x == "" then
      return nil, format('"%s"[%d] must be a non-empty string (got %s)', key, k, typeName(x))
    end
    if spec.values then
      local ok = false
      for _, a in ipairs(spec.values) do if a == x then ok = true end end
      if not ok then
        return nil, format('"%s"[%d] must be %s (got "%s")', key, k, enumText(spec.values), x)
      end
    end
  end
  return v
end

-- A list of integers in [spec.min, spec.max] (or one).
function checks.ints(spec, key, v)
  if type(v) == "number" then v = { v } end
  if type(v) ~= "table" or acl.is_acl(v) or #v == 0 then
    return nil, typeError(key, "a list of numbers", v)
  end
  for i = 1, #v do
    local x = v[i]
    if type(x) ~= "number" or x % 1 ~= 0 or x < spec.min or x > spec.max then
      return nil, format('"%s"[%d] must be an integer between %d and %d (got %s)', key, i,
        spec.min, spec.max, tostring(x))
    end
  end
  return v
end

-- errorfiles = { [status] = "path", ... }, status one of spec.statuses.
function checks.errorfiles(spec, key, v)
  if type(v) ~= "table" or acl.is_acl(v) then
    return nil, typeError(key, "a table { [503] = \"file.http\", ... }", v)
  end
  for status, path in pairs(v) do
    local known = false
    for _, s in ipairs(spec.statuses) do if s == status then known = true end end
    if not known then
      return nil, format('"%s": [%s]: not a status crescent answers itself (one of %s)', key,
        tostring(status), table.concat(spec.statuses, ", "))
    end
    if type(path) ~= "string" or path == "" then
      return nil, format('"%s"[%d] must be a file name (got %s)', key, status, typeName(path))
    end
  end
  return v
end

-- cpu_map = { [worker] = cpu, ... }
function checks.cpu_map(spec, key, v)
  if type(v) ~= "table" or acl.is_acl(v) then
    return nil, typeError(key, "a table { [worker] = cpu }", v)
  end
  for w, c in pairs(v) do
    if type(w) ~= "number" or w % 1 ~= 0 or w < 1 or w > 1024 then
      return nil, format('"%s": workers are numbered from 1 (got [%s])', key, tostring(w))
    end
    if type(c) ~= "number" or c % 1 ~= 0 or c < 0 or c > 4095 then
      return nil, format('"%s"[%d] must be a CPU number (got %s)', key, w, tostring(c))
    end
  end
  return v
end

-- certs = { "a.pem", { cert = "b.crt", key = "b.key" }, ... }
function checks.certs(spec, key, v)
  if type(v) ~= "table" or acl.is_acl(v) or #v == 0 then
    return nil, typeError(key, "a list of certificates", v)
  end
  local out = {}
  for i = 1, #v do
    local c = v[i]
    if type(c) == "string" and c ~= "" then
      out[i] = { cert = c }
    elseif type(c) == "table" and type(c.cert) == "string" and
        (c.key == nil or type(c.key) == "string") then
      out[i] = { cert = c.cert, key = c.key }
    else
      return nil, format('"%s"[%d] must be a file name or { cert = ..., key = ... }', key, i)
    end
  end
  return out
end

-- A server's tls: true (verify with the system CAs) or a table.
function checks.server_tls(spec, key, v, used)
  if v == true then return {} end
  if type(v) ~= "table" or acl.is_acl(v) then
    return nil, typeError(key, "true or a table of TLS settings", v)
  end
  return checks.table(spec, key, v, used)
end

-- An HTTP check request: "METHOD /path" or "/path" (then GET).
checks.check_http = function(spec, key, v)
  if type(v) ~= "string" then return nil, typeError(key, "a string", v) end
  if not (v:match("^%u+ +/%S*$") or v:match("^/%S*$")) then
    return nil, format('"%s" must be "METHOD /path" (got "%s")', key, v)
  end
  return v
end

-- A server's `check`: true/false, or a table of settings overriding its backend's.
function checks.check(spec, key, v, used)
  if type(v) == "boolean" then return v end
  if type(v) == "string" and used[key] and (v == "true" or v == "false") then
    return v == "true"
  end
  if type(v) ~= "table" or acl.is_acl(v) then
    return nil, typeError(key, "true, false or a table of check settings", v)
  end
  return checks.table(spec, key, v, used)
end

checks["function"] = function(spec, key, v)
  if type(v) ~= "function" then return nil, typeError(key, "a function", v) end
  return v
end

function checks.acl(spec, key, v)
  if not acl.is_acl(v) then return nil, typeError(key, "an ACL (acl.*)", v) end
  return v
end

function checks.duration(spec, key, v)
  if type(v) ~= "number" and type(v) ~= "string" then
    return nil, typeError(key, "a duration", v)
  end
  local d, err = values.duration(v)
  if not d then return nil, format('"%s": %s', key, err) end
  return d
end

function checks.size(spec, key, v)
  if type(v) ~= "number" and type(v) ~= "string" then return nil, typeError(key, "a size", v) end
  local n, err = values.size(v)
  if not n then return nil, format('"%s": %s', key, err) end
  if n < spec.min or n > spec.max then
    return nil, format('"%s" must be between %d and %d bytes (got %d)', key, spec.min, spec.max,
      n)
  end
  return n
end

-- Says where an interpolated value came from in the error `err` about it: a type error
-- ('... (got string)') shows the value instead of its type, any other gets the suffix.
local function fromEnv(err, v, names)
  local vars = {}
  for i, name in ipairs(names) do vars[i] = "${" .. name .. "}" end
  local from = " (from " .. concat(vars, ", ") .. ")"
  local head = err:match("^(.-) %(got string%)$")
  if head then return format('%s, got "%s"%s', head, v, from) end
  return err .. from
end

-- Runs the check for `spec` on `key`; an error about a value that came through ${...}
-- names the value and the variables.
local function run(spec, key, v, used)
  local val, err, subkey = checks[spec.t](spec, key, v, used)
  local names = used and used[key]
  if err and type(v) == "string" and type(names) == "table" and #names > 0 then
    err = fromEnv(err, v, names)
  end
  return val, err, subkey
end

function checks.table(spec, key, v, used)
  if type(v) ~= "table" or acl.is_acl(v) then return nil, typeError(key, "a table", v) end
  local names = {}
  for k in pairs(v) do names[#names + 1] = k end
  sort(names, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(names) do
    local sub = spec.keys[k]
    if type(k) ~= "string" then
      return nil, format('"%s" takes named keys only (got [%s])', key, tostring(k))
    end
    if not sub then return nil, _M.unknownKey(k, spec.keys, nil, key .. "."), k end
    local val, err = run(sub, key .. "." .. k, v[k], used)
    if err then return nil, err, k end
    out[k] = val
  end
  return out
end

-- { name = "<crypt(3) hash>", ... }: a plaintext password is refused (a hash is
-- "$id$...", as mkpasswd and openssl passwd -6 print).
function checks.crypt_users(spec, key, v)
  if type(v) ~= "table" or acl.is_acl(v) then return nil, typeError(key, "a table", v) end
  for name, hash in pairs(v) do
    if type(name) ~= "string" or not name:match("^[%w_.%-]+$") then
      return nil, format('"%s": user names are letters, digits, "_", "." or "-" (got %s)', key,
        tostring(name))
    end
    if type(hash) ~= "string" or not hash:match("^%$[%w]+%$[^:]+$") then
      return nil, format('"%s.%s" must be a crypt(3) hash like "$6$salt$..." ' ..
        "(mkpasswd -m sha-512, openssl passwd -6); plaintext passwords are refused", key, name)
    end
  end
  return v
end

-- A Prometheus metric name prefix: [a-zA-Z_:][a-zA-Z0-9_:]*
function checks.metric_prefix(spec, key, v)
  if type(v) ~= "string" or not v:match("^[%a_:][%w_:]*$") then
    return nil, format('"%s" must be a Prometheus name like "crescent" or "haproxy" (got %s)',
      key, type(v) == "string" and ('"' .. v .. '"') or typeName(v))
  end
  return v
end

function _M.check(spec, key, v, used)
  return run(spec, key, v, used)
end

return _M
