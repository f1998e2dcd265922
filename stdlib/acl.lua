-- crescent.acl: the `acl` helpers of the config DSL.
--
-- An ACL is a descriptor (a table with the metatable below) that mirrors
-- core::AclNode: leaves { kind = "match", fetch, op, arg, values, nocase, line, file }
-- and inner nodes { kind = "all" | "any" | "not", children }. The loader compiles it to
-- a native matcher (core/config/acl.h); nothing here runs per request.
--
-- Combine with a * b (and), a + b (or), -a (not), acl.all/any/none(...).

local values = require "crescent.values"

local _M = {}

local getinfo = debug.getinfo
local setmetatable, getmetatable, type, select, tostring, error, pairs = setmetatable,
  getmetatable, type, select, tostring, error, pairs
local format = string.format

-- Set by crescent.config: raises `file:line: message` for the call site at `level`.
local raise = function(level, msg) error(msg, level + 1) end

local Acl = {}
Acl.__index = Acl

local function isAcl(v) return getmetatable(v) == Acl end
_M.is_acl = isAcl

-- File and line of the DSL call site: level 1 is the caller of callsite().
local function callsite(level)
  local info = getinfo(level + 1, "Sl")
  if not info then return "?", 0 end
  local src = info.source or "?"
  if src:sub(1, 1) == "@" then src = src:sub(2) end
  return src, info.currentline or 0
end

local function node(level, t)
  t.file, t.line = callsite(level + 1)
  return setmetatable(t, Acl)
end

-- Checks a value list (interpolating strings) and the optional trailing
-- { nocase = true }. `level` is the DSL call site's level relative to the caller.
local function collect(level, what, first, ...)
  local n = select("#", ...)
  local args = { ... }
  local nocase = false
  if n > 0 and type(args[n]) == "table" then
    local opts = args[n]
    n = n - 1
    for k, v in pairs(opts) do
      if k ~= "nocase" then
        raise(level + 1, format('%s: unknown option "%s" (only nocase)', what, tostring(k)))
      end
      if type(v) ~= "boolean" then
        raise(level + 1, format('%s: "nocase" must be a boolean (got %s)', what, type(v)))
      end
      nocase = v
    end
  end
  local out = {}
  for i = 1, n do
    local v = args[i]
    local tv = type(v)
    if tv == "number" and first == "port" then
      v = tostring(v)
    elseif tv ~= "string" then
      raise(level + 1, format("%s: value %d must be a string (got %s)", what, i, tv))
    end
    local s, err = values.interpolate(v)
    if not s then raise(level + 1, err) end
    out[#out + 1] = s
  end
  if #out == 0 then raise(level + 1, format("%s: needs at least one value", what)) end
  return out, nocase
end

local function checkName(level, what, name)
  if type(name) ~= "string" or name == "" then
    raise(level + 1, format("%s: the first argument must be a name (got %s)", what, type(name)))
  end
  local s, err = values.interpolate(name)
  if not s then raise(level + 1, err) end
  return s
end

-- Leaf constructors: acl.path("/a", "/b", { nocase = true }) etc.
local function leaf(fetch, op, what, forced_nocase)
  return function(...)
    local vals, nocase = collect(2, what, fetch == "dst_port" and "port" or nil, ...)
    local a = node(2, { kind = "match", fetch = fetch, op = op, values = vals,
                        nocase = forced_nocase or nocase })
    return a  -- not a tail call: node() reads the caller's line from the stack
  end
end

_M.path = leaf("path", "eq", "acl.path")
_M.path_beg = leaf("path", "beg", "acl.path_beg")
_M.path_end = leaf("path", "end", "acl.path_end")
_M.path_sub = leaf("path", "sub", "acl.path_sub")
_M.path_reg = leaf("path", "reg", "acl.path_reg")
_M.host = leaf("host", "eq", "acl.host", true)
_M.method = leaf("method", "eq", "acl.method")
_M.src = leaf("src", "cidr", "acl.src")
_M.dst_port = leaf("dst_port", "port_range", "acl.dst_port")

-- acl.hdr(name) / acl.url_param(name): presence, refined with :eq/:beg/:end_/:sub/:reg.
local function sampled(fetch, what)
  return function(name)
    local n = checkName(2, what, name)
    local a = node(2, { kind = "match", fetch = fetch, op = "found", arg = n, values = {},
                        nocase = false, what = what })
    return a
  end
end
_M.hdr = sampled("hdr", "acl.hdr")
_M.url_param = sampled("url_param", "acl.url_param")

local function refine(op, method)
  return function(self, ...)
    if not isAcl(self) or self.op ~= "found" then
      raise(2, format("%s() applies to acl.hdr(name) or acl.url_param(name)", method))
    end
    local what = format('%s("%s"):%s', self.what, self.arg, method)
    local vals, nocase = collect(2, what, nil, ...)
    local a = node(2, { kind = "match", fetch = self.fetch, op = op, arg = self.arg,
                        values = vals, nocase = nocase })
    return a
  end
end
Acl.eq = refine("eq", "eq")
Acl.beg = refine("beg", "beg")
Acl.end_ = refine("end", "end_")
Acl["end"] = Acl.end_
Acl.sub = refine("sub", "sub")
Acl.reg = refine("reg", "reg")

-- Flat HAProxy-style forms: acl.hdr_beg("host", "api.") ...
local function flat(fetch, op, what)
  return function(name, ...)
    local n = checkName(2, what, name)
    local vals, nocase = collect(2, what, nil, ...)
    local a = node(2, { kind = "match", fetch = fetch, op = op, arg = n, values = vals,
                        nocase = nocase })
    return a
  end
end
_M.hdr_beg = flat("hdr", "beg", "acl.hdr_beg")
_M.hdr_end = flat("hdr", "end", "acl.hdr_end")
_M.hdr_sub = flat("hdr", "sub", "acl.hdr_sub")
_M.hdr_reg = flat("hdr", "reg", "acl.hdr_reg")

-- Combinators. `level` is the DSL call site relative to the caller of combine().
local function combine(level, kind, what, list)
  if #list == 0 then raise(level + 1, format("%s: needs at least one ACL", what)) end
  local children = {}
  for i = 1, #list do
    local a = list[i]
    if not isAcl(a) then
      raise(level + 1, format("%s: argument %d is not an ACL (got %s)", what, i, type(a)))
    end
    if a.kind == kind and kind ~= "not" then
      for j = 1, #a.children do children[#children + 1] = a.children[j] end
    else
      children[#children + 1] = a
    end
  end
  local a = node(level + 1, { kind = kind, children = children })
  return a
end

-- (No tail calls below: combine() and node() read the DSL call site from the stack.)
function _M.all(...)
  local a = combine(2, "all", "acl.all", { ... })
  return a
end
function _M.any(...)
  local a = combine(2, "any", "acl.any", { ... })
  return a
end
function _M.none(...)
  local any = combine(2, "any", "acl.none", { ... })
  local a = node(2, { kind = "not", children = { any } })
  return a
end

Acl.__mul = function(a, b)
  local r = combine(2, "all", 'ACL "*"', { a, b })
  return r
end
Acl.__add = function(a, b)
  local r = combine(2, "any", 'ACL "+"', { a, b })
  return r
end
Acl.__unm = function(a)
  local r = node(2, { kind = "not", children = { a } })
  return r
end
Acl.__tostring = function(a)
  if a.kind ~= "match" then return format("acl.%s(%d)", a.kind, #a.children) end
  return format("acl(%s %s %s)", a.fetch, a.op, table.concat(a.values, ","))
end

-- Installs the error reporter of crescent.config (file:line: message).
function _M._set_raise(f) raise = f end

return _M
