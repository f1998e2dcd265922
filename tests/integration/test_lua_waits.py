"""Hooks that wait, on the worker's loop (docs/lua-api.md, "Waiting"): crescent.sleep,
timers across a reload and a stop, a client that leaves during a wait, a balancer whose
pick waits, an auth sub-request to a real nginx with crescent.http.request, and a rate
limiter speaking RESP to a real redis-server over crescent.socket.tcp with setkeepalive."""

import concurrent.futures
import http.client
import os
import signal
import socket
import statistics
import time

from conftest import (SLOW, addr, curl, free_port, runtime_command, runtime_info,
                      wait_until)

WAITS = r"""
global { threads = 1, runtime = { socket = "%(sock)s" } }
defaults { mode = "http", timeout = { client = "30s", server = "30s", http_request = "5s" } }
frontend "public" {
  bind { "%(bind)s" },
  http_request = function(txn)
    local p = txn.req.path
    if p == "/sleep" then
      crescent.sleep(tonumber(txn.req.query) or 100)
      return txn:reply(200, "slept\n")
    elseif p == "/plain" then
      return txn:reply(200, "plain\n")
    end
  end,
}
"""


def get(port, path, timeout=30 * SLOW):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def test_sleep_replies_after_the_wait(crescent, sockdir):
    port, sock = free_port(), sockdir / "rt.sock"
    crescent(WAITS % {"bind": addr(port), "sock": sock}, ports=[port])
    t0 = time.monotonic()
    assert get(port, "/sleep?300") == (200, "slept\n")
    assert time.monotonic() - t0 >= 0.3  # it did wait (loop time), the lower bound only
    info = runtime_info(sock)
    assert info["LuaCoroutines"] == "0" and info["LuaWaiting"] == "0", info


def open_waiting(port, n, path):
    """n connections, each with a request whose hook waits; returns the sockets."""
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        conns.append(s)
    return conns


def test_a_thousand_waiting_hooks_do_not_block_the_worker(crescent, sockdir):
    """One worker, 1,000 hooks waiting on crescent.sleep: a plain request is still
    answered at once (median of five under 50 ms), while they all still wait."""
    port, sock = free_port(), sockdir / "rt.sock"
    crescent(WAITS % {"bind": addr(port), "sock": sock}, ports=[port])
    conns = open_waiting(port, 1000, "/sleep?20000")
    try:
        wait_until(lambda: runtime_info(sock)["LuaWaiting"] == "1000", 30 * SLOW,
                   "1,000 hooks waiting")
        took = []
        for _ in range(5):
            t0 = time.monotonic()
            assert get(port, "/plain") == (200, "plain\n")
            took.append(time.monotonic() - t0)
        assert runtime_info(sock)["LuaWaiting"] == "1000"  # nobody was woken early
        assert statistics.median(took) < 0.05, took
    finally:
        for s in conns:
            s.close()
    # Every client left during its wait: no coroutine, timer or socket stays behind.
    wait_until(lambda: runtime_info(sock)["LuaCoroutines"] == "0", 30 * SLOW,
               "the waits cancelled")
    info = runtime_info(sock)
    assert info["LuaWaiting"] == "0" and info["LuaSockets"] == "0", info
    assert info["CurrConns"] == "0", info


TIMERS = r"""
global { threads = 2, runtime = { socket = "%(sock)s" } }
local ticks = crescent.shared("ticks")
crescent.timer.every(50, function(premature, gen)
  if premature then
    ticks:incr("premature_" .. gen, 1, 0)
    log.info("timer of generation %%s retired", gen)
    return
  end
  ticks:incr("tick_" .. gen, 1, 0)
end, "%(gen)s")
local ok, err = crescent.timer.at(0, function(premature) ticks:incr("once_%(gen)s", 1, 0) end)
assert(ok, err)
frontend "f" {
  bind { "%(bind)s" },
  http_request = function(txn)
    return txn:reply(200, string.format("%%s %%s %%s %%s\n",
      ticks:get("tick_" .. txn.req.query) or 0, ticks:get("premature_" .. txn.req.query) or 0,
      ticks:get("once_" .. txn.req.query) or 0, crescent.timer.pending_count()))
  end,
}
"""


def counts(port, gen):
    status, body = get(port, f"/?{gen}")
    assert status == 200
    return [int(x) for x in body.split()]


def test_timers_run_stop_at_reload_and_at_stop(crescent, tmp_path, sockdir):
    port, sock = free_port(), sockdir / "rt.sock"
    cfg = tmp_path / "timers.lua"
    cfg.write_text(TIMERS % {"bind": addr(port), "sock": sock, "gen": "g1"})
    c = crescent(cfg, ports=[port])
    # Both workers run the script's timers: `every` ticks, `at` ran once per worker.
    wait_until(lambda: counts(port, "g1")[0] >= 10, 10 * SLOW, "g1 ticking")
    assert counts(port, "g1")[2] == 2
    cfg.write_text(TIMERS % {"bind": addr(port), "sock": sock, "gen": "g2"})
    assert "Success=1" in runtime_command(sock, "reload")
    # The old timers ran once more, premature, on each worker, and stopped; the new run.
    wait_until(lambda: counts(port, "g1")[1] == 2, 10 * SLOW, "g1's premature runs")
    wait_until(lambda: counts(port, "g2")[0] >= 10, 10 * SLOW, "g2 ticking")
    stopped = counts(port, "g1")[0]
    now = counts(port, "g2")[0]
    wait_until(lambda: counts(port, "g2")[0] >= now + 10, 10 * SLOW, "g2 still ticking")
    assert counts(port, "g1")[0] == stopped, "an old generation's timer still runs"
    # At a stop the current generation's timers run premature too, and nothing is left.
    assert c.stop() == 0
    assert c.stderr().count("timer of generation g2 retired") == 2, c.stderr()
    assert c.stderr().count("timer of generation g1 retired") == 2, c.stderr()


def test_timer_limit_gives_a_clear_error(crescent):
    port = free_port()
    cfg = f"""
global {{ threads = 1 }}
local made, err = 0, nil
for i = 1, 1100 do
  local ok, e = crescent.timer.at(60000, function() end)
  if not ok then err = e break end
  made = made + 1
end
frontend "f" {{
  bind {{ "{addr(port)}" }},
  http_request = function(txn) return txn:reply(200, made .. " " .. tostring(err) .. "\\n") end,
}}
"""
    crescent(cfg, ports=[port])
    assert get(port, "/") == (200, "1024 too many pending timers (1024, global.lua.max_timers)\n")


def test_balancer_pick_that_waits_still_balances(crescent, tcp_server):
    def server(name):
        def handler(conn):
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                body = name.encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return tcp_server(handler)

    s1, s2 = server("s1"), server("s2")
    port = free_port()
    cfg = f"""
local waiting = balancer {{
  name = "waiting",
  pick = function(txn, servers)
    crescent.sleep(5)
    txn.ctx.turn = (txn.ctx.turn or 0) + 1
    local n = tonumber(txn.req.query) or 0
    return servers[n % #servers + 1]
  end,
}}
frontend "f" {{ bind {{ "{addr(port)}" }}, default_backend = "b" }}
backend "b" {{
  balance = waiting,
  server "s1" {{ "{addr(s1.port)}" }},
  server "s2" {{ "{addr(s2.port)}" }},
}}
"""
    crescent(cfg, ports=[port])
    seen = [get(port, f"/?{i}")[1] for i in range(10)]
    assert seen == ["s1", "s2"] * 5, seen
    # Concurrent waiting picks, each exchange its own choice.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: get(port, f"/?{i}")[1], range(40)))
    assert got == ["s1", "s2"] * 20, got


AUTH_NGINX = """
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        location = /auth {{
            if ($http_authorization = "Bearer good") {{ return 204; }}
            return 401;
        }}
        location / {{ default_type text/plain; return 200 "app $uri\\n"; }}
    }}
"""

AUTH = r"""
global { threads = 1 }
frontend "public" {
  bind { "%(bind)s" },
  timeout = { client = "30s" },
  http_request = function(txn)
    local res, err = crescent.http.request{
      url = "http://%(nginx)s/auth", timeout = 5000,
      headers = { authorization = txn.req:header("authorization") or "" },
    }
    if not res then return txn:reply(503, "auth unavailable: " .. err .. "\n") end
    if res.status ~= 204 then return txn:deny(res.status == 401 and 401 or 403) end
  end,
  default_backend = "app",
}
backend "app" { server "nginx" { "%(nginx)s" } }
"""


def auth_get(port, token, path="/x"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60 * SLOW)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def test_auth_subrequest_to_nginx_under_500_clients(crescent, nginx_with):
    nport, port = free_port(), free_port()
    n = nginx_with(AUTH_NGINX.format(port=nport), [nport])
    crescent(AUTH % {"bind": addr(port), "nginx": addr(nport)}, ports=[port])
    assert auth_get(port, "good") == (200, "app /x\n")
    assert auth_get(port, "bad")[0] == 401
    assert auth_get(port, None)[0] == 401

    def one(i):
        token = "good" if i % 2 == 0 else "bad"
        status, body = auth_get(port, token, f"/r{i}")
        return i, status, body

    with concurrent.futures.ThreadPoolExecutor(500) as pool:
        results = list(pool.map(one, range(1000)))
    for i, status, body in results:
        if i % 2 == 0:
            assert (status, body) == (200, f"app /r{i}\n"), (i, status, body)
        else:
            assert status == 401, (i, status, body)
    assert n.running()


RATE = r"""
global { threads = 1, runtime = { socket = "%(sock)s" } }
local LIMIT = 5
-- RESP (redis.io/docs/reference/protocol-spec): commands are arrays of bulk strings.
local function command(sock, ...)
  local args = { ... }
  local out = { "*" .. #args .. "\r\n" }
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
  if kind == "-" then return nil, rest end
  return nil, "unexpected reply " .. line
end
frontend "public" {
  bind { "%(bind)s" },
  http_request = function(txn)
    local sock = crescent.socket.tcp()
    sock:settimeout(2000)
    local ok, err = sock:connect("127.0.0.1", %(redis)d)
    if not ok then return txn:reply(503, "redis: " .. err .. "\n") end
    local key = "rate:" .. (txn.req:header("x-user") or txn.src)
    local n, cerr = command(sock, "INCR", key)
    if not n then return txn:reply(503, "redis: " .. cerr .. "\n") end
    if n == 1 then command(sock, "EXPIRE", key, 60) end
    sock:setkeepalive(10000, 4)
    if n > LIMIT then return txn:reply(429, "slow down\n") end
    return txn:reply(200, "ok " .. n .. " reused " .. sock:getreusedtimes() .. "\n")
  end,
}
"""


def test_redis_rate_limit_with_pooled_connections(crescent, redis, sockdir):
    port, sock = free_port(), sockdir / "rt.sock"
    crescent(RATE % {"bind": addr(port), "sock": sock, "redis": redis.port}, ports=[port])
    statuses = []
    for i in range(8):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
        c.request("GET", "/", headers={"X-User": "alice"})
        r = c.getresponse()
        statuses.append((r.status, r.read().decode()))
        c.close()
    assert [s for s, _ in statuses] == [200] * 5 + [429] * 3, statuses
    assert statuses[0][1].startswith("ok 1 ")
    assert redis.command("GET", "rate:alice") == "8"
    assert 0 < redis.command("TTL", "rate:alice") <= 60
    # One connection carried every request: the pool reused it (Redis's own count).
    clients = [l for l in redis.command("CLIENT", "LIST").splitlines() if "cmd=" in l]
    others = [l for l in clients if "cmd=client" not in l]
    assert len(others) == 1, clients
    assert int(runtime_info(sock)["LuaSockets"]) == 1  # the idle pooled one
    # A user of its own has its own count.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    c.request("GET", "/", headers={"X-User": "bob"})
    assert c.getresponse().status == 200
    c.close()


def test_client_closing_during_a_socket_wait_releases_it(crescent, tcp_server, sockdir):
    """A hook waiting on a socket read whose client goes away: the coroutine is cancelled
    and its socket closed (the server sees the close)."""
    import threading

    closed = threading.Event()

    def silent(conn):
        conn.recv(100)          # the hook's request
        if conn.recv(100) == b"":
            closed.set()        # crescent closed its side
    server = tcp_server(silent)
    port, sock = free_port(), sockdir / "rt.sock"
    cfg = f"""
global {{ threads = 1, runtime = {{ socket = "{sock}" }} }}
frontend "f" {{
  bind {{ "{addr(port)}" }},
  http_request = function(txn)
    local s = crescent.socket.tcp()
    assert(s:connect("127.0.0.1", {server.port}))
    s:send("hello")
    local data, err = s:receive("*l")  -- never answered
    return txn:reply(500, "unexpected " .. tostring(err) .. "\\n")
  end,
}}
"""
    crescent(cfg, ports=[port])
    conns = open_waiting(port, 1, "/")
    wait_until(lambda: runtime_info(sock)["LuaWaiting"] == "1", 10 * SLOW, "the hook waiting")
    assert runtime_info(sock)["LuaSockets"] == "1"
    conns[0].close()
    assert closed.wait(10 * SLOW), "the hook's socket was not closed"
    wait_until(lambda: runtime_info(sock)["LuaCoroutines"] == "0", 10 * SLOW, "cancelled")
    assert runtime_info(sock)["LuaSockets"] == "0"
