-- crescent.config: the configuration DSL (docs/config.md).
--
-- install(opts) creates the DSL globals (global, defaults, frontend, backend, listen,
-- bind, server, use_backend, acl, env, log, balancer, on_reload) and returns the
-- evaluation context. Declarations are validated as they are made and recorded in a
-- normalized form; ctx.seal() ends the evaluation and ctx.resolve() cross-checks names
-- and modes and returns what lua/config_builder.cc turns into core::Config.
--
-- Every error is raised as the string "file:line: message" (level 0), where file:line is
-- the user's call site or, for a key, the line where that key is written.

local values = require "crescent.values"
local acl = require "crescent.acl"
local schema = require "crescent.schema"

local _M = {}

local getinfo = debug.getinfo
local io_open = io.open
local type, pairs, ipairs, tostring, error, select = type, pairs, ipairs, tostring, error, select
local setmetatable, getmetatable, next = setmetatable, getmetatable, next
local format, gsub, find, sub = string.format, string.gsub, string.find, string.sub
local sort, concat = table.sort, table.concat
local min = math.min

-- Locations ------------------------------------------------------------------------

-- File and line of a call site; level 1 is the caller of callsite().
local function callsite(level)
  local info = getinfo(level + 1, "Sl")
  if not info then return "?", 0 end
  local src = info.source or "?"
  if sub(src, 1, 1) == "@" then src = sub(src, 2) end
  return src, info.currentline or 0
end

local function fail(file, line, msg) error(format("%s:%d: %s", file, line, msg), 0) end

-- Like error(msg, level): level 1 is the function calling raise().
local function raise(level, msg)
  local file, line = callsite(level + 1)
  fail(file, line, msg)
end
acl._set_raise(raise)

local sources = {}  -- file -> array of lines, or false when unreadable

local function sourceLines(file)
  local lines = sources[file]
  if lines == nil then
    lines = false
    local fh = io_open(file, "rb")
    if fh then
      local text = fh:read("*a")
      fh:close()
      lines = {}
      for l in gsub(text, "\r", ""):gmatch("([^\n]*)\n?") do lines[#lines + 1] = l end
    end
    sources[file] = lines
  end
  return lines
end

local function setSource(file, text)
  local lines = {}
  for l in gsub(text, "\r", ""):gmatch("([^\n]*)\n?") do lines[#lines + 1] = l end
  sources[file] = lines
end

-- Line where `key = ` is written, searching from `from` (the object's first line).
local function keyLine(file, from, key)
  local lines = sourceLines(file)
  if not lines or type(key) ~= "string" then return from end
  local pat = "%f[%w_]" .. gsub(key, "%W", "%%%0") .. "%s*=%f[^=]"
  for i = from, min(#lines, from + 2000) do
    if find(lines[i], pat) then return i end
  end
  return from
end

-- Line where the string `raw` is written (a positional value such as an address).
local function valueLine(file, from, raw)
  local lines = sourceLines(file)
  if not lines or type(raw) ~= "string" or find(raw, "\n", 1, true) then return from end
  for i = from, min(#lines, from + 2000) do
    if find(lines[i], raw, 1, true) then return i end
  end
  return from
end

-- The evaluation context ------------------------------------------------------------

local ENTRY = setmetatable({}, { __tostring = function() return "entry" end })
local BALANCER = {}
-- `server "x"` closures still waiting for their body, to name them in errors.
local unfinished = setmetatable({}, { __mode = "k" })

local function quoted(kind, name) return format('%s "%s"', kind, name) end

-- Raises an error about `key` of object `obj` (which has label, file, line).
local function keyFail(obj, key, msg, subkey)
  local line = keyLine(obj.file, obj.line, key)
  if subkey then line = keyLine(obj.file, line, subkey) end
  fail(obj.file, line, obj.label .. ": " .. msg)
end

-- Interpolates every string in a body (one level, plus nested plain tables such as
-- `timeout`), returning a copy and the set of keys whose value used a ${...} (each mapped
-- to the list of variable names, for error messages).
local function interpolateBody(obj, body)
  local copy, used = {}, {}
  for k, v in pairs(body) do
    if type(v) == "string" then
      local s, u, names = values.interpolate(v)
      if not s then
        local line = type(k) == "string" and keyLine(obj.file, obj.line, k)
          or valueLine(obj.file, obj.line, v)
        fail(obj.file, line, u)
      end
      copy[k], used[k] = s, u and names
    elseif type(v) == "table" and v[ENTRY] == nil and not acl.is_acl(v) and v[BALANCER] == nil then
      -- Nested plain tables (timeout, check, tls = { certs = { ... } }): every string at
      -- any depth, errors located at the outer key's line (or the inner key's).
      local function deep(t, depth, path)
        local inner = {}
        for ik, iv in pairs(t) do
          if type(iv) == "string" then
            local s, u, names = values.interpolate(iv)
            if not s then
              local line = keyLine(obj.file, obj.line, k)
              fail(obj.file, type(ik) == "string" and keyLine(obj.file, line, ik) or line, u)
            end
            inner[ik] = s
            -- keyed by the full path, as schema.check names nested keys ("check.port")
            if u then used[path .. "." .. tostring(ik)] = names end
          elseif type(iv) == "table" and depth < 8 and getmetatable(iv) == nil
              and iv[ENTRY] == nil and iv[BALANCER] == nil and not acl.is_acl(iv) then
            inner[ik] = deep(iv, depth + 1, path .. "." .. tostring(ik))
          else
            inner[ik] = iv
          end
        end
        return inner
      end
      copy[k] = deep(v, 1, k)
    else
      copy[k] = v
    end
  end
  return copy, used
end

-- Checks the keys of a body against a schema; returns the normalized values and the
-- positional entries. `allowed` maps entry kinds (bind, server, use_backend) to true.
local function checkBody(obj, body, keys, allowed)
  local copy, used = interpolateBody(obj, body)
  local n = #copy
  local names = {}
  for k in pairs(copy) do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
      names[#names + 1] = k
    end
  end
  sort(names, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(names) do
    if type(k) ~= "string" then
      fail(obj.file, obj.line, format("%s: unexpected key [%s]", obj.label, tostring(k)))
    end
    local spec = keys[k]
    if not spec then
      keyFail(obj, k, schema.unknownKey(k, keys, allowed))
    end
    local v, err, subkey = schema.check(spec, k, copy[k], used)
    if err then keyFail(obj, k, err, subkey) end
    out[k] = v
  end
  local entries = {}
  for i = 1, n do
    local e = copy[i]
    local kind = type(e) == "table" and e[ENTRY]
    local u = unfinished[e]
    if u then
      fail(u.file, u.line, format('%s: server "%s" has no body (write server "%s" { "host:port" })',
        obj.label, u.name, u.name))
    end
    if not kind then
      fail(obj.file, obj.line, format("%s: unexpected %s at position %d (%s)", obj.label,
        schema.describe(e), i, schema.entryHint(allowed)))
    end
    if not allowed[kind] then
      fail(e.file, e.line, format("%s: %s entries are not allowed here (%s)", obj.label, kind,
        schema.entryHint(allowed)))
    end
    entries[#entries + 1] = e
  end
  return out, entries
end

local function newContext(opts)
  local ctx = {
    path = opts.path,
    hooks = opts.hooks,
    global = {},
    defaults = {},            -- normalized keys of the last defaults{} (HAProxy: a new one resets)
    frontends = {}, backends = {},
    fe_by_name = {}, be_by_name = {},
    pending = {},             -- sections named but never given a body, by declaration order
    reload_hooks = {},
    balancers = {},
    files = {},               -- Lua files the script required (global.watch watches them)
    file_texts = {},          -- their texts as read, in the same order
    sealed = false,
  }

  local function registerHook(fn)
    local hooks = ctx.hooks
    hooks[#hooks + 1] = fn
    return #hooks
  end

  -- A level's error pages for the C++ builder, which reads and checks each file: the
  -- errorfiles sorted by status, each with where it was written, and the error_page hook.
  local function errorPages(obj, files, fn)
    local pages = { hook = fn and registerHook(fn) or 0, files = {} }
    if files then
      local at = keyLine(obj.file, obj.line, "errorfiles")
      for status, path in pairs(files) do
        pages.files[#pages.files + 1] = { status = status, path = path, file = obj.file,
          line = valueLine(obj.file, at, path), label = obj.label }
      end
      sort(pages.files, function(a, b) return a.status < b.status end)
    end
    return pages
  end

  local function checkOpen(level, what)
    if ctx.sealed then
      raise(level + 1, what .. ": configuration functions can only be used while the " ..
        "configuration script loads")
    end
  end

  local function checkName(level, what, name)
    if type(name) ~= "string" or name == "" then
      raise(level + 1, format('%s: expected a name: %s "name" { ... } (got %s)', what, what,
        type(name)))
    end
    local s, err = values.interpolate(name)
    if not s then raise(level + 1, err) end
    if s == "" then raise(level + 1, format("%s: the name is empty", what)) end
    return s
  end

  local function claimName(obj, index, other_kind)
    local prev = index[obj.name]
    if prev then
      local where = prev.file == obj.file and format("line %d", prev.line)
        or format("%s:%d", prev.file, prev.line)
      if prev.kind == obj.kind then
        fail(obj.file, obj.line, format("%s: duplicate name (first declared at %s)", obj.label,
          where))
      end
      fail(obj.file, obj.line, format("%s: duplicate %s name (%s declared at %s)", obj.label,
        other_kind, prev.label, where))
    end
    index[obj.name] = obj
  end

  -- Entries ------------------------------------------------------------------------

  -- Splits an entry body into its address (first positional value, interpolated) and
  -- its keys.
  local function addressAndKeys(obj, e, what, example)
    local keys, extra = {}, 0
    for k, v in pairs(e.body) do
      if type(k) == "number" and k % 1 == 0 and k >= 1 then
        if k > 1 then extra = extra + 1 end
      else
        keys[k] = v
      end
    end
    local addr = e.body[1]
    if addr == nil then
      fail(e.file, e.line, format("%s: missing address (%s)", obj.label, example))
    end
    if type(addr) ~= "string" then
      fail(e.file, e.line, format("%s: the address must be a string (got %s)", obj.label,
        type(addr)))
    end
    local s, err = values.interpolate(addr)
    if not s then fail(e.file, valueLine(e.file, e.line, addr), err) end
    if extra > 0 then
      fail(e.file, e.line, format("%s: one address per %s (write one %s per address)", obj.label,
        what, what))
    end
    return s, keys
  end

  local entryCheckers = {
    bind = function(section, e)
      local obj = { label = section.label .. ": bind", file = e.file, line = e.line }
      local addr, keys = addressAndKeys(obj, e, "bind", 'bind { ":8080" }')
      local out = checkBody(obj, keys, schema.bind, {})
      local tls = out.tls
      if tls then
        local certs = {}
        if tls.cert then certs[1] = { cert = tls.cert, key = tls.key } end
        for _, c in ipairs(tls.certs or {}) do certs[#certs + 1] = c end
        if #certs == 0 then
          keyFail(obj, "tls", 'tls needs a certificate: tls = { cert = "site.pem" }')
        end
        if tls.key and not tls.cert then
          keyFail(obj, "tls", 'tls.key is given without tls.cert')
        end
        tls.certs = certs
        if tls.verify and tls.verify ~= "none" and not tls.ca then
          keyFail(obj, "tls", format('tls.verify = "%s" needs tls.ca (the CA file that signs ' ..
            'client certificates)', tls.verify), "verify")
        end
        if (tls.crl or tls.verify_depth) and (tls.verify or "none") == "none" then
          local k = tls.crl and "crl" or "verify_depth"
          keyFail(obj, "tls", format('tls.%s needs tls.verify = "required" or "optional"', k), k)
        end
      end
      return { text = addr, accept_proxy = out.accept_proxy, mode = out.mode, user = out.user,
               group = out.group, tls = tls, threads = out.threads, file = e.file,
               line = e.line }
    end,
    server = function(section, e)
      local obj = { label = section.label .. ": " .. quoted("server", e.name), file = e.file,
                    line = e.line }
      local addr, keys = addressAndKeys(obj, e, "server",
        format('server "%s" { "127.0.0.1:8080" }', e.name))
      local out = checkBody(obj, keys, schema.server, {})
      return { name = e.name, text = addr, weight = out.weight, maxconn = out.maxconn,
               maxqueue = out.maxqueue, backup = out.backup, slowstart = out.slowstart,
               check = out.check, source = out.source, send_proxy = out.send_proxy,
               proxy_v2_options = out.proxy_v2_options, tls = out.tls, agent = out.agent,
               file = e.file, line = e.line }
    end,
    use_backend = function(section, e)
      local obj = { label = section.label .. ": use_backend", file = e.file, line = e.line }
      local keys, extra = {}, 0
      for k, v in pairs(e.body) do
        if type(k) == "number" and k % 1 == 0 and k >= 1 then
          if k > 1 then extra = extra + 1 end
        else
          keys[k] = v
        end
      end
      local name = e.body[1]
      if type(name) ~= "string" or name == "" then
        fail(e.file, e.line, format("%s: the first value must be a backend name " ..
          '(use_backend { "name", when = acl }) (got %s)', obj.label, type(name)))
      end
      if extra > 0 then
        fail(e.file, e.line, format("%s: one backend name per use_backend", obj.label))
      end
      local s, err = values.interpolate(name)
      if not s then fail(e.file, valueLine(e.file, e.line, name), err) end
      obj.label = section.label .. ": " .. quoted("use_backend", s)
      local out = checkBody(obj, keys, schema.use_backend, {})
      return { backend = s, when = out.when, file = e.file, line = e.line }
    end,
  }

  local function makeEntry(kind, name, file, line, body)
    return { [ENTRY] = kind, name = name, body = body, file = file, line = line }
  end

  local function entryFn(kind)
    if kind == "server" then
      return function(name)
        checkOpen(2, "server")
        local n = checkName(2, "server", name)
        local file, line = callsite(2)
        local function withBody(body)
          if type(body) ~= "table" then
            raise(2, format('server "%s": expected a table { "host:port", ... } (got %s)', n,
              type(body)))
          end
          return makeEntry("server", n, file, line, body)
        end
        unfinished[withBody] = { name = n, file = file, line = line }
        return withBody
      end
    end
    return function(body)
      checkOpen(2, kind)
      if type(body) ~= "table" then
        raise(2, format("%s: expected a table: %s { ... } (got %s)", kind, kind, type(body)))
      end
      local file, line = callsite(2)
      return makeEntry(kind, nil, file, line, body)
    end
  end

  -- Sections -----------------------------------------------------------------------

  local function pick(a, b) if a ~= nil then return a end return b end

  local function mergeTimeouts(base, over)
    local t = {}
    for k, v in pairs(base or {}) do t[k] = v end
    for k, v in pairs(over or {}) do t[k] = v end
    return t
  end

  local function buildFrontend(obj, out, entries, D)
    local fe = {
      name = obj.name, label = obj.label, file = obj.file, line = obj.line,
      mode = pick(out.mode, D.mode) or "http",
      timeout = mergeTimeouts(D.timeout, out.timeout),
      maxconn = pick(out.maxconn, D.maxconn),
      forwardfor = pick(out.forwardfor, D.forwardfor),
      log = pick(out.log, D.log),
      compression = pick(out.compression, D.compression),
      binds = {}, use_backend = {},
    }
    if out.http_request then
      if fe.mode ~= "http" then
        keyFail(obj, "http_request", '"http_request" needs mode = "http"')
      end
      fe.http_request_hook = registerHook(out.http_request)
    end
    if out.http_response then
      if fe.mode ~= "http" then
        keyFail(obj, "http_response", '"http_response" needs mode = "http"')
      end
      fe.http_response_hook = registerHook(out.http_response)
    end
    if out.tcp_request then fe.tcp_request_hook = registerHook(out.tcp_request) end
    fe.inspect_delay = out.inspect_delay
    fe.errors = errorPages(obj, out.errorfiles, out.error_page)
    fe.default_errors = D.error_pages
    if type(fe.log) == "function" then
      fe.log_hook = registerHook(fe.log)
      fe.log = true
    end
    for _, e in ipairs(entries) do
      if e[ENTRY] == "bind" then
        fe.binds[#fe.binds + 1] = entryCheckers.bind(obj, e)
      elseif e[ENTRY] == "use_backend" then
        fe.use_backend[#fe.use_backend + 1] = entryCheckers.use_backend(obj, e)
      end
    end
    if #fe.binds == 0 then
      fail(obj.file, obj.line, obj.label .. ': no bind (add bind { ":8080" })')
    end
    return fe
  end

  local function buildBackend(obj, out, entries, D)
    local be = {
      name = obj.name, label = obj.label, file = obj.file, line = obj.line,
      mode = pick(out.mode, D.mode) or "http",
      timeout = mergeTimeouts(D.timeout, out.timeout),
      retries = pick(out.retries, D.retries),
      redispatch = pick(out.redispatch, D.redispatch),
      forwardfor = pick(out.forwardfor, D.forwardfor),
      compression = pick(out.compression, D.compression),
      pool = pick(out.pool, D.pool),
      http_reuse = pick(out.http_reuse, D.http_reuse),
      servers = {},
      -- a listen's pages are its frontend's (one level, not two)
      errors = obj.kind ~= "listen" and errorPages(obj, out.errorfiles, out.error_page) or nil,
      default_errors = D.error_pages,
    }
    local balance = pick(out.balance, D.balance)
    if type(balance) == "table" then
      be.lua_balancer = { name = balance.name, pick_hook = balance.hook,
                          init_hook = balance.init_hook, release_hook = balance.release_hook }
      be.balance = "roundrobin"
    else
      be.balance = balance
    end
    be.hash_type = pick(out.hash_type, D.hash_type)
    local check = pick(out.check, D.check) or {}
    local source = pick(out.source, D.source)
    local function registerExpect(c)
      if type(c.expect) == "function" then
        c.expect_hook = registerHook(c.expect)
        c.expect = nil
      end
      return c
    end
    registerExpect(check)
    local seen = {}
    for _, e in ipairs(entries) do
      if e[ENTRY] == "server" then
        local s = entryCheckers.server(obj, e)
        -- HAProxy's `check` keyword: the server opts in, with its backend's settings
        -- overridden by its own.
        if s.check then
          local c = { enabled = true }
          for k, v in pairs(check) do c[k] = v end
          if type(s.check) == "table" then
            for k, v in pairs(registerExpect(s.check)) do c[k] = v end
          end
          s.check = c
        else
          s.check = nil
        end
        s.source = s.source or source
        -- An agent: the backend's settings overridden by the server's own.
        if s.agent or out.agent then
          local a = {}
          for k, v in pairs(out.agent or {}) do a[k] = v end
          for k, v in pairs(s.agent or {}) do a[k] = v end
          s.agent = a
        end
        if seen[s.name] then
          fail(e.file, e.line, format('%s: server "%s": duplicate name (first declared at ' ..
            "line %d)", obj.label, s.name, seen[s.name].line))
        end
        seen[s.name] = s
        be.servers[#be.servers + 1] = s
      end
    end
    -- Check settings that no server opts into are likely a forgotten `check = true`: a
    -- warning, not an error (defaults' settings count only for a backend with servers).
    local checked = false
    for _, s in ipairs(be.servers) do checked = checked or s.check ~= nil end
    if not checked and (out.check or (D.check and #be.servers > 0)) and opts.log
        and not opts.quiet then
      opts.log(2, format("%s:%d: %s: check settings%s but no server has check = true", obj.file,
        obj.line, obj.label, out.check and "" or " (from defaults)"))
    end
    if out.http_response and obj.kind ~= "listen" then  -- a listen's runs once, as its frontend's
      if be.mode ~= "http" then
        keyFail(obj, "http_response", '"http_response" needs mode = "http"')
      end
      be.http_response_hook = registerHook(out.http_response)
    end
    if out.service then
      if be.mode ~= "http" then keyFail(obj, "service", '"service" needs mode = "http"') end
      if #be.servers > 0 then
        keyFail(obj, "service", "has both servers and a service (use one or the other)")
      end
      be.service_hook = registerHook(out.service)
    end
    return be
  end

  local function section(kind)
    return function(name)
      checkOpen(2, kind)
      local n = checkName(2, kind, name)
      local file, line = callsite(2)
      local obj = { kind = kind, name = n, label = quoted(kind, n), file = file, line = line }
      ctx.pending[#ctx.pending + 1] = obj
      return function(body)
        checkOpen(2, obj.label)
        if type(body) ~= "table" then
          raise(2, format("%s: expected a table body %s { ... } (got %s)", obj.label, obj.label,
            type(body)))
        end
        obj.done = true
        if kind == "listen" and body.default_backend ~= nil then
          keyFail(obj, "default_backend", '"default_backend" is implied in a listen section ' ..
            "(it is the listen itself)")
        end
        local keys, allowed = schema[kind], schema.entries[kind]
        local out, entries = checkBody(obj, body, keys, allowed)
        local D = ctx.defaults
        if kind == "frontend" or kind == "listen" then
          claimName(obj, ctx.fe_by_name, "frontend")
        end
        if kind == "backend" or kind == "listen" then
          claimName(obj, ctx.be_by_name, "backend")
        end
        if kind == "frontend" then
          local fe = buildFrontend(obj, out, entries, D)
          fe.default_backend = out.default_backend
          ctx.frontends[#ctx.frontends + 1] = fe
        elseif kind == "backend" then
          ctx.backends[#ctx.backends + 1] = buildBackend(obj, out, entries, D)
        else  -- listen: a frontend and a backend with the same name
          local fe = buildFrontend(obj, out, entries, D)
          fe.default_backend = n
          fe.implied_default = true
          ctx.frontends[#ctx.frontends + 1] = fe
          ctx.backends[#ctx.backends + 1] = buildBackend(obj, out, entries, D)
        end
      end
    end
  end

  -- Globals ------------------------------------------------------------------------

  local G = {}

  function G.global(body)
    checkOpen(2, "global")
    if type(body) ~= "table" then
      raise(2, format("global: expected a table: global { ... } (got %s)", type(body)))
    end
    local file, line = callsite(2)
    local obj = { kind = "global", label = "global", file = file, line = line }
    local out = checkBody(obj, body, schema.global, {})
    local rt = out.runtime
    if rt then
      local at = keyLine(file, line, "runtime")
      if not rt.socket or rt.socket == "" then
        fail(file, at, "global: runtime: socket: a UNIX socket path is required")
      end
      if rt.mode and not find(rt.mode, "^[0-7][0-7][0-7][0-7]?$") then
        fail(file, at, format('global: runtime: mode must be octal permissions like "0600" ' ..
          '(got "%s")', rt.mode))
      end
    end
    for k, v in pairs(out) do ctx.global[k] = v end
  end

  function G.defaults(body)
    checkOpen(2, "defaults")
    if type(body) ~= "table" then
      raise(2, format("defaults: expected a table: defaults { ... } (got %s)", type(body)))
    end
    local file, line = callsite(2)
    local obj = { kind = "defaults", label = "defaults", file = file, line = line }
    ctx.defaults = checkBody(obj, body, schema.defaults, {})
    ctx.defaults.error_pages = errorPages(obj, ctx.defaults.errorfiles, ctx.defaults.error_page)
  end

  -- admin { bind { ... }, auth = { ... }, metrics = { ... } }: the admin listener, an
  -- internal HTTP frontend named "admin" answered by crescent's built-in admin service
  -- (stats, /metrics, /healthz, /readyz; docs/observability.md).
  function G.admin(body)
    checkOpen(2, "admin")
    if type(body) ~= "table" then
      raise(2, format("admin: expected a table: admin { bind { ... }, auth = { ... } } (got %s)",
        type(body)))
    end
    local file, line = callsite(2)
    local obj = { kind = "admin", name = "admin", label = "admin", file = file, line = line }
    local out, entries = checkBody(obj, body, schema.admin, schema.entries.admin)
    claimName(obj, ctx.fe_by_name, "frontend")
    local auth = out.auth or {}
    local users = auth.users or {}
    if next(users) == nil and #(auth.tokens or {}) == 0 then
      fail(file, out.auth and keyLine(file, line, "auth") or line,
        "admin: auth needs users or tokens (every admin request must authenticate)")
    end
    for _, name in ipairs(auth.read_only or {}) do
      if not users[name] then
        fail(file, keyLine(file, line, "auth"),
          format('admin: auth: read_only: "%s" is not one of the users', name))
      end
    end
    local D = ctx.defaults
    local fe = buildFrontend(obj, { mode = "http", timeout = out.timeout, maxconn = out.maxconn,
                                    log = true }, entries, {})
    fe.timeout = mergeTimeouts(D.timeout, out.timeout)
    local names = {}
    for name in pairs(users) do names[#names + 1] = name end
    sort(names)
    local list = {}
    for i, name in ipairs(names) do list[i] = { name = name, hash = users[name] } end
    fe.admin = { users = list, tokens = auth.tokens or {}, read_only = auth.read_only or {},
                 metrics_prefix = (out.metrics or {}).prefix or "crescent" }
    ctx.frontends[#ctx.frontends + 1] = fe
  end

  G.frontend = section("frontend")
  G.backend = section("backend")
  G.listen = section("listen")
  G.bind = entryFn("bind")
  G.server = entryFn("server")
  G.use_backend = entryFn("use_backend")

  G.acl = {}
  for k, v in pairs(acl) do
    if sub(k, 1, 1) ~= "_" and k ~= "is_acl" then G.acl[k] = v end
  end

  function G.env(...)
    local name, default = ...
    if type(name) ~= "string" then
      raise(2, format("env: the name must be a string (got %s)", type(name)))
    end
    local v = values.lookup(name)
    if v ~= nil then return v end
    if select("#", ...) >= 2 then return default end
    raise(2, format('environment variable "%s" is not set', name))
  end

  local native_log = opts.log
  local function logger(level, what)
    return function(fmt, ...)
      if type(fmt) ~= "string" then
        raise(2, format("log.%s: the format must be a string (got %s)", what, type(fmt)))
      end
      local msg = select("#", ...) > 0 and format(fmt, ...) or fmt
      if ctx.sealed or not opts.quiet then native_log(level, msg) end
    end
  end
  G.log = { debug = logger(0, "debug"), info = logger(1, "info"),
            warning = logger(2, "warning"), error = logger(3, "error") }

  function G.on_reload(fn)
    checkOpen(2, "on_reload")
    if type(fn) ~= "function" then
      raise(2, format("on_reload: expected a function (got %s)", type(fn)))
    end
    ctx.reload_hooks[#ctx.reload_hooks + 1] = registerHook(fn)
  end

  function G.balancer(body)
    checkOpen(2, "balancer")
    if type(body) ~= "table" then
      raise(2, format("balancer: expected a table: balancer { name = ..., pick = ... } (got %s)",
        type(body)))
    end
    local file, line = callsite(2)
    local obj = { kind = "balancer", label = "balancer", file = file, line = line }
    local out = checkBody(obj, body, schema.balancer, {})
    if not out.name then fail(file, line, 'balancer: missing "name"') end
    if not out.pick then
      fail(file, line, format('balancer "%s": missing "pick" function', out.name))
    end
    obj.label = quoted("balancer", out.name)
    -- The functions stay readable on the object so that balancers can be composed
    -- (a balancer calling another's init/pick with its own part of the state).
    local b = { [BALANCER] = true, name = out.name, pick = out.pick, init = out.init,
                on_release = out.on_release, file = file, line = line }
    b.hook = registerHook(out.pick)
    if out.init then b.init_hook = registerHook(out.init) end
    if out.on_release then b.release_hook = registerHook(out.on_release) end
    ctx.balancers[#ctx.balancers + 1] = b
    return b
  end
  schema.setBalancerTag(BALANCER)

  ctx.globals = G
  return ctx
end

-- Evaluation ------------------------------------------------------------------------

-- Ends the evaluation: every named section got its body; the DSL is closed.
local function seal(ctx)
  for _, obj in ipairs(ctx.pending) do
    if not obj.done then
      fail(obj.file, obj.line, format('%s: missing body (write %s { ... })', obj.label, obj.label))
    end
  end
  ctx.sealed = true
  local names = {}
  for _, be in ipairs(ctx.backends) do names[be.name] = be.mode end
  ctx.backend_modes = names
end

-- Cross-checks names and modes; returns { global, frontends, backends } with 0-based
-- backend indexes, ready for the C++ builder.
local function resolve(ctx)
  local index = {}
  for i, be in ipairs(ctx.backends) do index[be.name] = i - 1 end
  for _, fe in ipairs(ctx.frontends) do
    local function target(name, file, line, what)
      local i = index[name]
      if not i then
        fail(file, line, format('%s: %s: no backend named "%s"', fe.label, what, name))
      end
      local be = ctx.backends[i + 1]
      if be.mode ~= fe.mode then
        fail(file, line, format('%s: %s: backend "%s" is in %s mode but the frontend is in %s ' ..
          "mode", fe.label, what, name, be.mode, fe.mode))
      end
      return i
    end
    for _, rule in ipairs(fe.use_backend) do
      rule.backend_index = target(rule.backend, rule.file, rule.line, "use_backend")
    end
    if fe.default_backend then
      local line = fe.implied_default and fe.line or keyLine(fe.file, fe.line, "default_backend")
      fe.default_backend_index = target(fe.default_backend, fe.file, line, "default_backend")
    end
  end
  return { global = ctx.global, frontends = ctx.frontends, backends = ctx.backends,
           reload_hooks = ctx.reload_hooks, files = ctx.files, file_texts = ctx.file_texts }
end

-- Sandbox: what a config script (and later its hooks) may use. DESIGN §5.
local function sandbox(G, dir, files, file_texts, modules)
  local loadstring_ = loadstring
  G.dofile, G.loadfile = nil, nil
  local os_ = os
  local safe_os = { getenv = os_.getenv, time = os_.time, clock = os_.clock, date = os_.date,
                    difftime = os_.difftime }
  G.os = safe_os
  G.io, G.debug = nil, nil
  package.loaded.os = safe_os
  package.loaded.io, package.loaded.debug = nil, nil
  package.loadlib = nil
  package.cpath = ""
  package.path = dir .. "?.lua"
  if G.jit then
    G.jit.on = function()
      error("jit.on: the JIT compiler stays off so that the runaway guard can stop scripts", 2)
    end
  end

  local loaded, preload = package.loaded, package.preload
  local LOADING = {}
  -- LuaJIT shows a chunk name of 60 bytes or more as "..." and its last 56 bytes
  -- (LUA_IDSIZE); give errors at a module's top level their full path back.
  local function fullPath(msg, path)
    if type(msg) ~= "string" or #path < 60 then return msg end
    local short = "..." .. sub(path, #path - 55)
    if sub(msg, 1, #short) == short then return path .. sub(msg, #short + 1) end
    return msg
  end
  G.require = function(name)
    if type(name) ~= "string" then
      error(format("require: the module name must be a string (got %s)", type(name)), 2)
    end
    local m = loaded[name]
    if m == LOADING then error(format('require: module "%s" requires itself', name), 2) end
    if m ~= nil then return m end
    local loader = preload[name]
    local file
    if not loader then
      if not find(name, "^[%w_][%w_%-]*[%.%w_%-]*$") or find(name, "..", 1, true) then
        error(format('require: module "%s" not found (a name like "mod" or "dir.mod" is ' ..
          "looked up next to the config)", name), 2)
      end
      file = dir .. gsub(name, "%.", "/") .. ".lua"
      -- A worker's state runs the text the main evaluation read (modules[file]), not
      -- what the file holds by now: every state of a generation runs the same code.
      local text = modules[file]
      if not text then
        local fh = io_open(file, "rb")
        if not fh then
          error(format('require: module "%s" not found (no file "%s")', name, file), 2)
        end
        text = fh:read("*a")
        fh:close()
        if not text then
          error(format('require: module "%s": cannot read "%s"', name, file), 2)
        end
      end
      files[#files + 1] = file
      file_texts[#file_texts + 1] = text
      local err
      loader, err = loadstring_(text, "@" .. file)
      if not loader then error(fullPath(err, file), 0) end
    end
    loaded[name] = LOADING
    local ok, res = pcall(loader, name)
    if not ok then
      loaded[name] = nil
      error(file and fullPath(res, file) or res, 0)
    end
    if loaded[name] == LOADING then loaded[name] = res == nil and true or res end
    return loaded[name]
  end
end

-- opts: path (as given), dir ("" or ending in "/"), text (the script), hooks (the
-- registry's hooks table), log (function(level 0..3, msg)), quiet (drop log lines
-- until the evaluation is sealed).
function _M.install(opts)
  local ctx = newContext(opts)
  if opts.text then setSource(opts.path, opts.text) end
  local G = _G
  for k, v in pairs(ctx.globals) do G[k] = v end
  sandbox(G, opts.dir or "", ctx.files, ctx.file_texts, opts.modules or {})
  ctx.seal = function() return seal(ctx) end
  ctx.resolve = function() return resolve(ctx) end
  return ctx
end

return _M
