"""Balancing through the real binary: Lua balancers (steering, errors, full servers, the
stdlib ones), server maxconn queues (order, limit, timeout queue, clients leaving the
queue), retries and redispatch, and runtime control of servers from Lua.

Backends are small threaded HTTP servers in this process that answer with their name and
record what they see (arrival order, requests in flight)."""

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import EXAMPLES, SLOW, addr, free_port, wait_until


class NamedServer:
    """HTTP/1.1 server answering "<name> <path>" after ?delay=ms (or after `gate` opens).
    Records paths in arrival order, the largest number of requests in flight, and the
    requests still in flight."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.paths = []
        self.inflight = 0
        self.max_inflight = 0
        self.gate = None  # threading.Event: requests with ?gate wait for it
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with server.lock:
                    server.paths.append(self.path)
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    delay = 0
                    if "delay=" in self.path:
                        delay = int(self.path.split("delay=")[1].split("&")[0])
                    if delay:
                        time.sleep(delay / 1000)
                    if "gate" in self.path and server.gate is not None:
                        server.gate.wait(30 * SLOW)
                    state = self.headers.get("x-state")
                    text = f"{server.name} {self.path}" + (f" [{state}]" if state else "")
                    body = text.encode()
                    failing = "fail" in self.path and (
                        "fail-on-" not in self.path or f"fail-on-{server.name}" in self.path)
                    status = 500 if failing else 200
                finally:
                    with server.lock:
                        server.inflight -= 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made = []

    def make(*names):
        out = [NamedServer(n) for n in names]
        made.extend(out)
        return out

    yield make
    for s in made:
        s.close()


def get(port, path, headers=None, timeout=30 * SLOW):
    """One request on a new connection: (status, body text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def config(fe_port, backend_body, extra="", threads=1):
    return f"""
global {{ threads = {threads} }}
defaults {{ mode = "http", timeout = {{ connect = "2s", client = "30s", server = "30s" }} }}
{extra}
frontend "fe" {{ bind {{ "127.0.0.1:{fe_port}" }}, default_backend = "b" }}
backend "b" {{
{backend_body}
}}
"""


# ---------------------------------------------------------------------------
# Lua balancers


def test_lua_balancer_steers_by_header(crescent, servers):
    s1, s2, s3 = servers("s1", "s2", "s3")
    port = free_port()
    extra = """
local pin = balancer {
  name = "pin",
  pick = function(txn, servers)
    local want = txn.req:header("x-pin")
    for _, s in ipairs(servers) do
      if s.name == want then return s end
    end
  end,
}
"""
    body = f"""
  balance = pin,
  server "s1" {{ "{addr(s1.port)}" }},
  server "s2" {{ "{addr(s2.port)}" }},
  server "s3" {{ "{addr(s3.port)}" }},
"""
    crescent(config(port, body, extra), ports=[port])
    for want in ["s2", "s3", "s1", "s3", "s3"]:
        status, text = get(port, "/", {"x-pin": want})
        assert status == 200 and text.startswith(want + " "), (want, text)
    # No header: pick returns nil and roundrobin decides, over all three.
    seen = {get(port, "/")[1].split()[0] for _ in range(6)}
    assert seen == {"s1", "s2", "s3"}


def test_lua_balancer_error_falls_back_and_is_logged(crescent, servers):
    s1, s2 = servers("s1", "s2")
    port = free_port()
    extra = """
local broken = balancer {
  name = "broken",
  pick = function(txn, servers)
    local t = nil
    return t.field   -- attempt to index a nil value
  end,
}
"""
    body = f"""
  balance = broken,
  server "s1" {{ "{addr(s1.port)}" }},
  server "s2" {{ "{addr(s2.port)}" }},
"""
    c = crescent(config(port, body, extra), ports=[port])
    names = [get(port, "/x")[1].split()[0] for _ in range(4)]
    assert sorted(names) == ["s1", "s1", "s2", "s2"]  # roundrobin served every request
    wait_until(lambda: "falling back to roundrobin" in c.stderr(), 5 * SLOW, "the fallback log")
    err = c.stderr()
    assert 'balancer "broken"' in err and "attempt to index" in err
    assert "stack traceback" in err


def test_lua_balancer_returning_full_server_is_refused(crescent, servers):
    s1, s2 = servers("s1", "s2")
    s1.gate = threading.Event()
    port = free_port()
    extra = """
local sticky = balancer {
  name = "always-s1",
  pick = function(txn, servers)
    return crescent.server("b/s1")   -- even when it is not in the list (full)
  end,
}
"""
    body = f"""
  balance = sticky,
  server "s1" {{ "{addr(s1.port)}", maxconn = 1 }},
  server "s2" {{ "{addr(s2.port)}" }},
"""
    c = crescent(config(port, body, extra), ports=[port])
    assert get(port, "/first")[1].startswith("s1 ")
    # Occupy s1's only slot, then ask again: s1 is full, the pick is refused and the
    # request goes to s2 instead of waiting.
    held = threading.Thread(target=get, args=(port, "/hold?gate"))
    held.start()
    wait_until(lambda: s1.inflight == 1, 10 * SLOW, "s1 busy")
    status, text = get(port, "/second")
    assert status == 200 and text.startswith("s2 "), text
    wait_until(lambda: "not usable now" in c.stderr(), 5 * SLOW, "the refusal log")
    s1.gate.set()
    held.join(30 * SLOW)


def test_lua_balancer_state_and_on_release(crescent, servers):
    """init runs once per backend and worker, pick gets its state, on_release the result;
    pick may also edit the request it balances (the server sees the header)."""
    s1, s2 = servers("s1", "s2")
    port = free_port()
    extra = """
local counting = balancer {
  name = "counting",
  init = function(backend)
    return { inits = 1, released = 0, failed = 0, backend = backend.name,
             total_servers = #backend.servers }
  end,
  pick = function(txn, servers, state)
    txn.req:set_header("x-state", string.format("%s %d %d %d %d", state.backend, state.inits,
      state.released, state.failed, state.total_servers))
    return servers[1]
  end,
  on_release = function(server, result, state)
    if result.error then state.failed = state.failed + 1
    elseif result.status == 200 and result.time >= 0 then state.released = state.released + 1 end
  end,
}
"""
    body = f"""
  balance = counting,
  server "s1" {{ "{addr(s1.port)}" }},
  server "s2" {{ "{addr(s2.port)}" }},
"""
    crescent(config(port, body, extra), ports=[port])
    assert get(port, "/a")[1] == "s1 /a [b 1 0 0 2]"
    assert get(port, "/b")[1] == "s1 /b [b 1 1 0 2]"
    assert get(port, "/fail")[0] == 500
    assert get(port, "/c")[1] == "s1 /c [b 1 2 1 2]"


def test_stdlib_balancers(crescent, servers):
    s1, s2, s3 = servers("s1", "s2", "s3")
    port = free_port()
    extra = """
local balancers = require "crescent.balancers"
local by_user = balancers.chash_header("x-user", { load_factor = 1.5 })
"""
    body = f"""
  balance = by_user,
  server "s1" {{ "{addr(s1.port)}" }},
  server "s2" {{ "{addr(s2.port)}" }},
  server "s3" {{ "{addr(s3.port)}" }},
"""
    crescent(config(port, body, extra), ports=[port])
    # A user always lands on the same server; users spread over all three.
    owner = {}
    for user in [f"user{i}" for i in range(30)]:
        first = get(port, "/", {"x-user": user})[1].split()[0]
        again = get(port, "/", {"x-user": user})[1].split()[0]
        assert first == again, user
        owner[user] = first
    assert set(owner.values()) == {"s1", "s2", "s3"}
    # Without the header, roundrobin decides.
    assert {get(port, "/")[1].split()[0] for _ in range(6)} == {"s1", "s2", "s3"}


def test_least_response_time_prefers_fast_server(crescent, servers):
    fast, slow = servers("fast", "slow")
    port = free_port()
    # The slow server sleeps 150 ms per request (a wrapper path is added by a hook).
    extra = """
local balancers = require "crescent.balancers"
"""
    body = f"""
  balance = balancers.least_response_time(),
  server "fast" {{ "{addr(fast.port)}" }},
  server "slow" {{ "{addr(slow.port)}" }},
"""
    crescent(config(port, body, extra), ports=[port])
    orig = slow.httpd.RequestHandlerClass.do_GET

    def slow_get(handler):
        time.sleep(0.15)
        orig(handler)

    slow.httpd.RequestHandlerClass.do_GET = slow_get
    for _ in range(4):
        get(port, "/learn")
    names = [get(port, "/x")[1].split()[0] for _ in range(20)]
    assert names.count("fast") >= 17, names


def test_custom_balancer_example(crescent):
    port, api1, api2 = free_port(), free_port(), free_port()
    env = {"CRESCENT_ADDR": addr(port), "API1_ADDR": addr(api1), "API2_ADDR": addr(api2)}
    crescent(EXAMPLES / "custom-balancer.lua", ports=[port, api1, api2], env=env)
    for user in ["alice", "bob", "carol", "dave"]:
        first = get(port, "/", {"x-user": user})[1].split()[0]
        assert all(get(port, "/", {"x-user": user})[1].split()[0] == first for _ in range(4))
    for name in ["api2", "api1", "api2"]:
        assert get(port, "/", {"x-server": name})[1].split()[0] == name
    assert {get(port, "/")[1].split()[0] for _ in range(4)} == {"api1", "api2"}


# ---------------------------------------------------------------------------
# maxconn and queues


# A second frontend whose hook reports the server queue of b/s1, so tests can wait for a
# request to be queued instead of sleeping.
QUEUE_PROBE = """
frontend "probe" {{
  bind {{ "127.0.0.1:{port}" }},
  http_request = function(txn)
    return txn:reply(200, tostring(crescent.server("b/s1").queue))
  end,
}}
"""


def queue_len(probe):
    return int(get(probe, "/q")[1])


def test_server_maxconn_queues_in_order(crescent, servers):
    (s1,) = servers("s1")
    port, probe = free_port(), free_port()
    # "uri" keeps each request on its server (here the only one): full, it waits in
    # that server's queue, which the probe can read.
    body = f"""
  balance = "uri",
  timeout = {{ queue = "30s" }},
  server "s1" {{ "{addr(s1.port)}", maxconn = 2 }},
"""
    c = crescent(config(port, body, QUEUE_PROBE.format(port=probe)), ports=[port, probe])
    s1.gate = threading.Event()
    results = {}

    def one(i):
        # 100 ms per request: far more than the jitter of two granted requests on their
        # way to the server, so arrival order shows the queue's order.
        results[i] = get(port, f"/r{i}?gate" if i < 2 else f"/r{i}?delay=100")

    threads = []
    for i in range(50):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
        # Request i is in (at the server for the first two, queued after) before i+1.
        if i < 2:
            wait_until(lambda: s1.inflight == i + 1, 10 * SLOW, f"request {i} at the server")
        else:
            wait_until(lambda: queue_len(probe) == i - 1, 10 * SLOW, f"request {i} queued")
    s1.gate.set()
    for t in threads:
        t.join(60 * SLOW)
    assert len(results) == 50
    assert all(r[0] == 200 for r in results.values()), results
    assert s1.max_inflight == 2, s1.max_inflight
    order = [int(p.split("?")[0][2:]) for p in s1.paths]
    # Queue order kept. Grants are strictly FIFO, but two slots free almost together and
    # the two granted requests race on their way to the server (a pooled connection
    # vs a new one), so neighbours may arrive swapped: nothing more.
    assert sorted(order) == list(range(50))
    assert all(abs(pos - i) <= 1 for pos, i in enumerate(order)), order
    # A client has its response before crescent writes the exchange's log line: wait
    # for all 50 lines before counting them.
    wait_until(lambda: len([d for d in c.http_logs() if d["request"].startswith("GET /r")]) == 50,
               10 * SLOW, "the 50 log lines")
    queued = [d for d in c.http_logs() if d["request"].startswith("GET /r") and int(d["Tw"]) > 0]
    assert len(queued) == 48, ("every request after the first two waited (Tw > 0)", [d for d in c.http_logs() if int(d["Tw"]) <= 0])
    assert queue_len(probe) == 0


def test_timeout_queue_gives_503(crescent, servers):
    (s1,) = servers("s1")
    s1.gate = threading.Event()
    port = free_port()
    body = f"""
  timeout = {{ queue = "300ms" }},
  server "s1" {{ "{addr(s1.port)}", maxconn = 1 }},
"""
    c = crescent(config(port, body), ports=[port])
    held = threading.Thread(target=get, args=(port, "/hold?gate"))
    held.start()
    wait_until(lambda: s1.inflight == 1, 10 * SLOW, "s1 busy")
    t0 = time.monotonic()
    status, _ = get(port, "/queued")
    waited = time.monotonic() - t0
    assert status == 503
    assert waited >= 0.25, waited
    d = c.wait_http_log(lambda d: d["status"] == 503)
    assert d["state"].startswith("sQ")
    s1.gate.set()
    held.join(30 * SLOW)
    assert s1.paths == ["/hold?gate"]  # the timed-out request never reached the server


def test_maxqueue_refuses_at_once(crescent, servers):
    (s1,) = servers("s1")
    s1.gate = threading.Event()
    port, probe = free_port(), free_port()
    body = f"""
  balance = "uri",
  timeout = {{ queue = "20s" }},
  server "s1" {{ "{addr(s1.port)}", maxconn = 1, maxqueue = 1 }},
"""
    c = crescent(config(port, body, QUEUE_PROBE.format(port=probe)), ports=[port, probe])
    held = threading.Thread(target=get, args=(port, "/hold?gate"))
    held.start()
    wait_until(lambda: s1.inflight == 1, 10 * SLOW, "s1 busy")
    waiting = {}
    t = threading.Thread(target=lambda: waiting.setdefault("r", get(port, "/wait")))
    t.start()
    wait_until(lambda: queue_len(probe) == 1, 10 * SLOW, "/wait queued")
    # The queue is full (maxqueue = 1): the next request gets 503 without waiting.
    t0 = time.monotonic()
    assert get(port, "/over")[0] == 503
    assert time.monotonic() - t0 < 5
    d = c.wait_http_log(lambda d: d["request"].startswith("GET /over"))
    assert d["state"].startswith("sQ") and d["Tw"] == "0", d
    s1.gate.set()
    held.join(30 * SLOW)
    t.join(30 * SLOW)
    assert waiting["r"][0] == 200


def test_client_leaving_queue_is_dropped(crescent, servers):
    (s1,) = servers("s1")
    s1.gate = threading.Event()
    port, probe = free_port(), free_port()
    body = f"""
  balance = "uri",
  timeout = {{ queue = "20s" }},
  server "s1" {{ "{addr(s1.port)}", maxconn = 1 }},
"""
    c = crescent(config(port, body, QUEUE_PROBE.format(port=probe)), ports=[port, probe])
    held = threading.Thread(target=get, args=(port, "/hold?gate"))
    held.start()
    wait_until(lambda: s1.inflight == 1, 10 * SLOW, "s1 busy")
    # A client queues, then goes away: it leaves the queue at once.
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    s.sendall(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: queue_len(probe) == 1, 10 * SLOW, "/gone queued")
    s.close()
    wait_until(lambda: queue_len(probe) == 0, 10 * SLOW, "/gone out of the queue")
    d = c.wait_http_log(lambda d: d["request"].startswith("GET /gone"), what="the CQ log line")
    assert d["state"].startswith("CQ"), d
    # The slot goes to the next request; /gone never reaches s1.
    s1.gate.set()
    held.join(30 * SLOW)
    assert get(port, "/after")[0] == 200
    assert "/gone" not in s1.paths


# ---------------------------------------------------------------------------
# retries and redispatch


def test_retries_and_redispatch_against_refusing_server(crescent, servers):
    (good,) = servers("good")
    dead = free_port()  # nothing listens: connections are refused
    port = free_port()
    body = f"""
  retries = 2, redispatch = true,
  balance = "first",
  server "dead" {{ "{addr(dead)}" }},
  server "good" {{ "{addr(good.port)}" }},
"""
    c = crescent(config(port, body), ports=[port])
    status, text = get(port, "/x")
    assert status == 200 and text.startswith("good "), text
    d = c.wait_http_log(lambda d: d["request"].startswith("GET /x"))
    assert d["server"] == "good" and int(d["retries"]) == 2, d


def test_retries_without_redispatch_give_503(crescent, servers):
    dead = free_port()
    port = free_port()
    body = f"""
  retries = 2, redispatch = false,
  server "dead" {{ "{addr(dead)}" }},
"""
    c = crescent(config(port, body), ports=[port])
    status, _ = get(port, "/x")
    assert status == 503  # HAProxy's status for a server that cannot be reached
    d = c.wait_http_log(lambda d: d["request"].startswith("GET /x"))
    assert int(d["retries"]) == 2 and d["state"].startswith("SC"), d


# ---------------------------------------------------------------------------
# runtime control from Lua


def test_runtime_server_control_from_lua(crescent, servers):
    s1, s2 = servers("s1", "s2")
    port = free_port()
    extra = """
local admin_hook = function(txn)
  local p = txn.req.path
  local name, what, value = p:match("^/admin/(%w+)/(%w+)/(%w+)$")
  if name then
    local s = crescent.server("b/" .. name)
    if what == "state" then s:set_state(value)
    elseif what == "weight" then s:set_weight(tonumber(value))
    elseif what == "maxconn" then s:set_maxconn(tonumber(value)) end
    return txn:reply(200, string.format("%s %s %d %d\\n", s.name, s.state, s.weight, s.maxconn))
  end
end
"""
    cfg = f"""
global {{ threads = 1 }}
defaults {{ mode = "http" }}
{extra}
frontend "fe" {{ bind {{ "127.0.0.1:{port}" }}, http_request = admin_hook, default_backend = "b" }}
backend "b" {{
  server "s1" {{ "{addr(s1.port)}" }},
  server "s2" {{ "{addr(s2.port)}" }},
}}
"""
    crescent(cfg, ports=[port])
    assert get(port, "/admin/s1/state/drain") == (200, "s1 DRAIN 1 0\n")
    assert {get(port, "/x")[1].split()[0] for _ in range(6)} == {"s2"}
    assert get(port, "/admin/s1/state/maint")[1] == "s1 MAINT 1 0\n"
    assert {get(port, "/x")[1].split()[0] for _ in range(4)} == {"s2"}
    assert get(port, "/admin/s1/state/ready")[1] == "s1 UP 1 0\n"
    assert get(port, "/admin/s2/weight/3")[1] == "s2 UP 3 0\n"
    # Weights 1:3. Smooth round robin keeps any run of picks within one of the exact
    # shares, whatever state earlier picks left.
    names = [get(port, "/x")[1].split()[0] for _ in range(40)]
    assert 29 <= names.count("s2") <= 31 and names.count("s1") + names.count("s2") == 40, names
    assert get(port, "/admin/s2/weight/0")[1] == "s2 UP 0 0\n"
    assert {get(port, "/x")[1].split()[0] for _ in range(4)} == {"s1"}
    assert get(port, "/admin/s1/maxconn/5")[1] == "s1 UP 1 5\n"
    status, text = get(port, "/admin/s1/state/bogus")
    assert status == 500  # the hook raised: a clear error, logged


def test_one_balancer_shared_by_two_backends(crescent, servers):
    """Written once, used by two backends: each backend gets its own init and state."""
    a1, a2, b1 = servers("a1", "a2", "b1")
    port, port_b = free_port(), free_port()
    cfg = f"""
global {{ threads = 1 }}
defaults {{ mode = "http" }}
local counter = balancer {{
  name = "counter",
  init = function(backend) return {{ name = backend.name, n = 0 }} end,
  pick = function(txn, servers, state)
    state.n = state.n + 1
    txn.req:set_header("x-state", state.name .. " " .. state.n)
    return servers[#servers]
  end,
}}
frontend "fa" {{ bind {{ "127.0.0.1:{port}" }}, default_backend = "ba" }}
frontend "fb" {{ bind {{ "127.0.0.1:{port_b}" }}, default_backend = "bb" }}
backend "ba" {{ balance = counter, server "a1" {{ "{addr(a1.port)}" }}, server "a2" {{ "{addr(a2.port)}" }} }}
backend "bb" {{ balance = counter, server "b1" {{ "{addr(b1.port)}" }} }}
"""
    crescent(cfg, ports=[port, port_b])
    assert get(port, "/")[1] == "a2 / [ba 1]"
    assert get(port, "/")[1] == "a2 / [ba 2]"
    assert get(port_b, "/")[1] == "b1 / [bb 1]"
    assert get(port, "/")[1] == "a2 / [ba 3]"


def test_lua_balancer_in_tcp_mode(crescent, tcp_server):
    """In TCP mode pick sees txn.src and no txn.req; on_release gets the session."""

    def named(name):
        def handler(conn):
            conn.sendall(name.encode())

        return handler

    t1, t2 = tcp_server(named("t1")), tcp_server(named("t2"))
    port = free_port()
    cfg = f"""
global {{ threads = 1 }}
defaults {{ mode = "tcp", timeout = {{ connect = "2s", client = "10s", server = "10s" }} }}
local by_src = balancer {{
  name = "by-src",
  pick = function(txn, servers)
    assert(txn.req == nil, "no request in TCP mode")
    if txn.src == "127.0.0.1" then return servers[2] end
  end,
}}
frontend "f" {{ bind {{ "127.0.0.1:{port}" }}, default_backend = "b" }}
backend "b" {{
  balance = by_src,
  server "t1" {{ "{addr(t1.port)}" }},
  server "t2" {{ "{addr(t2.port)}" }},
}}
"""
    c = crescent(cfg, ports=[port])

    def read_name():
        with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
            return s.recv(16).decode()

    assert [read_name() for _ in range(3)] == ["t2", "t2", "t2"]
    assert "falling back" not in c.stderr()


def test_observe_layer7_marks_server_down(crescent, servers):
    """Passive checks: error_limit consecutive 5xx on real traffic take a server down."""
    bad, good = servers("bad", "good")
    port = free_port()
    body = f"""
  check = {{ http = "GET /health", inter = "30s", observe = "layer7", error_limit = 3 }},
  server "bad" {{ "{addr(bad.port)}", check = true }},
  server "good" {{ "{addr(good.port)}", check = true }},
"""
    c = crescent(config(port, body), ports=[port])
    # Round robin alternates; every request to "bad" fails (its path says so).
    statuses = []
    for _ in range(6):
        statuses.append(get(port, "/x?fail-on-bad")[0])
    wait_until(lambda: "server b/bad is DOWN" in c.stderr(), 5 * SLOW, "bad marked down")
    assert "3 consecutive errors observed on traffic" in c.stderr()
    assert "server b/good is DOWN" not in c.stderr()
    assert {get(port, "/y")[1].split()[0] for _ in range(4)} == {"good"}
