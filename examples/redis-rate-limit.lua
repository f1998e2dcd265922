-- redis-rate-limit: a fixed-window rate limit kept in Redis, so that every crescent
-- process (and every worker) shares the count. The hook speaks RESP, Redis's protocol,
-- over crescent.socket.tcp (OpenResty's cosocket shape), and gives the connection back
-- to the worker's pool with setkeepalive: one connection serves many requests.
--
--   REDIS_HOST=127.0.0.1 REDIS_PORT=6379 APP_ADDR=127.0.0.1:9001 RATE_LIMIT=10 \
--     crescent -f examples/redis-rate-limit.lua
--   for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1:8080/; done
--   -> 200 ... 200 429 429
--
-- The key is the X-Api-Key header, else the client's address; a window is RATE_WINDOW
-- seconds. When Redis cannot be reached the request goes through (fail open) and a
-- warning is logged.

-- Code reads the environment with env(); ${...} is for the strings given to the DSL.
local HOST = env("REDIS_HOST", "127.0.0.1")
local PORT = tonumber(env("REDIS_PORT", "6379"))
local LIMIT = tonumber(env("RATE_LIMIT", "10"))
local WINDOW = tonumber(env("RATE_WINDOW", "60"))

-- One command as a RESP array of bulk strings; the reply's first line decoded
-- (integers, simple strings and errors: what INCR and EXPIRE answer).
local function redis(sock, ...)
  local args = { ... }
  local out = { "*", #args, "\r\n" }
  for _, a in ipairs(args) do
    a = tostring(a)
    out[#out + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  local ok, err = sock:send(out)
  if not ok then return nil, err end
  local line, rerr = sock:receive("*l")
  if not line then return nil, rerr end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == ":" then return tonumber(rest) end
  if kind == "+" then return rest end
  return nil, kind == "-" and rest or ("unexpected reply: " .. line)
end

global { threads = tonumber(env("THREADS", "2")) }

defaults {
  mode = "http",
  timeout = { connect = "2s", client = "30s", server = "30s" },
}

frontend "public" {
  bind { "${LISTEN:-127.0.0.1:8080}" },
  http_request = function(txn)
    local who = txn.req:header("x-api-key") or txn.src
    local key = string.format("rate:%s:%d", who, math.floor(os.time() / WINDOW))
    local sock = crescent.socket.tcp()
    sock:settimeout(500)
    local ok, err = sock:connect(HOST, PORT)
    if not ok then
      log.warning("rate limit: redis %s:%d: %s (request let through)", HOST, PORT, err)
      return
    end
    local n, cerr = redis(sock, "INCR", key)
    if n == 1 then redis(sock, "EXPIRE", key, WINDOW) end
    if not n then
      sock:close()
      log.warning("rate limit: redis: %s (request let through)", cerr)
      return
    end
    sock:setkeepalive(30000, 16)
    txn.ctx.remaining = math.max(LIMIT - n, 0)
    if n > LIMIT then
      return txn:reply(429, "rate limit exceeded\n", { ["retry-after"] = tostring(WINDOW) })
    end
  end,
  http_response = function(txn)
    if txn.ctx.remaining then
      txn.resp:set_header("x-ratelimit-limit", tostring(LIMIT))
      txn.resp:set_header("x-ratelimit-remaining", tostring(txn.ctx.remaining))
    end
  end,
  default_backend = "app",
}

backend "app" {
  server "app1" { "${APP_ADDR:-127.0.0.1:9001}" },
}
