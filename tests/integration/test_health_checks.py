"""Active health checks through the real binary: a backend of two HTTP servers (threads in
this process) checked with `check = { http = "GET /health", ... }`. A server whose /health
fails is logged DOWN and gets no traffic; when it recovers it is logged UP and gets
traffic again. A Lua `expect` function decides from the body."""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import SLOW, free_port, wait_log, wait_until


class CheckedServer:
    """HTTP/1.1 server: /health answers `health_status` with `health_body`; any other path
    answers 200 with the server's name. Counts health checks and other requests."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.health_status = 200
        self.health_body = "ready"
        self.checks = 0
        self.check_headers = None
        self.traffic = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with server.lock:
                    if self.path == "/health":
                        server.checks += 1
                        server.check_headers = dict(self.headers)
                        status, body = server.health_status, server.health_body
                    else:
                        server.traffic += 1
                        status, body = 200, server.name
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set_health(self, status=None, body=None):
        with self.lock:
            if status is not None:
                self.health_status = status
            if body is not None:
                self.health_body = body

    def check_count(self):
        with self.lock:
            return self.checks

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pair():
    made = [CheckedServer("s1"), CheckedServer("s2")]
    yield made
    for s in made:
        s.close()


def get(port, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * SLOW)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def config(fe_port, s1, s2, check):
    return f"""
global {{ threads = 2 }}
defaults {{ mode = "http", timeout = {{ connect = "2s", client = "30s", server = "30s" }} }}
frontend "fe" {{ bind {{ "127.0.0.1:{fe_port}" }}, default_backend = "b" }}
backend "b" {{
  check = {check},
  server "s1" {{ "127.0.0.1:{s1.port}", check = true }},
  server "s2" {{ "127.0.0.1:{s2.port}", check = true }},
}}
"""


def served_by(fe_port, n=12):
    """Names of the servers that answered n requests."""
    names = []
    for _ in range(n):
        status, body = get(fe_port)
        assert status == 200, (status, body)
        names.append(body)
    return names


def test_http_check_takes_a_failing_server_out_and_back(crescent, pair):
    s1, s2 = pair
    port = free_port()
    check = '{ http = "GET /health", inter = "200ms", rise = 2, fall = 2 }'
    c = crescent(config(port, s1, s2, check), ports=[port])

    # Both checked, both in use.
    wait_until(lambda: s1.check_count() >= 2 and s2.check_count() >= 2, 10 * SLOW,
               "checks of both servers")
    assert set(served_by(port)) == {"s1", "s2"}
    h = s1.check_headers
    assert h["Host"] == f"127.0.0.1:{s1.port}"
    assert h["User-Agent"] == "crescent-health-check"
    assert h["Connection"] == "close"

    s1.set_health(503, "maintenance")
    end = wait_log(c, r"server b/s1 is DOWN, reason: Layer7 wrong status, code: 503, "
                      r'info: "Service Unavailable", check duration: \d+ms\.')
    assert "server b/s2 is DOWN" not in c.stderr()
    traffic_before = s1.traffic
    assert served_by(port) == ["s2"] * 12
    assert s1.traffic == traffic_before

    s1.set_health(200, "ready")
    wait_log(c, r"server b/s1 is UP, reason: Layer7 check passed, code: 200, "
                r"check duration: \d+ms\.", after=end)
    assert set(served_by(port)) == {"s1", "s2"}


def test_lua_expect_decides_from_the_body(crescent, pair):
    s1, s2 = pair
    port = free_port()
    check = """{
    http = "GET /health", inter = "200ms", rise = 2, fall = 2,
    expect = function(res, server)
      return res.status == 200 and res.body:find("ready") ~= nil,
             server.name .. " says " .. res.body
    end,
  }"""
    c = crescent(config(port, s1, s2, check), ports=[port])
    wait_until(lambda: s1.check_count() >= 2 and s2.check_count() >= 2, 10 * SLOW,
               "checks of both servers")
    assert set(served_by(port)) == {"s1", "s2"}

    # A 200 whose body the function refuses.
    s2.set_health(200, "starting")
    end = wait_log(c, r'server b/s2 is DOWN, reason: Layer7 response content error, '
                      r'info: "s2 says starting"')
    assert served_by(port) == ["s1"] * 12

    s2.set_health(200, "ready now")
    wait_log(c, r"server b/s2 is UP, reason: Layer7 check passed, code: 200", after=end)
    assert set(served_by(port)) == {"s1", "s2"}
    assert "server b/s1 is DOWN" not in c.stderr()


def test_backend_without_usable_server_answers_503(crescent, pair):
    s1, s2 = pair
    port = free_port()
    check = '{ http = "GET /health", inter = "200ms", rise = 2, fall = 2 }'
    c = crescent(config(port, s1, s2, check), ports=[port])
    s1.set_health(500)
    s2.set_health(500)
    wait_log(c, r"server b/s\d is DOWN, .* backend has no server available!")
    status, _ = get(port)
    assert status == 503
