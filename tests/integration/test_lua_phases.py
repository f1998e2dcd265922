"""The phases of an exchange in Lua, end to end (docs/lua-api.md, "Phases"):
http_response edits the server's response, rewrites a 404 into a page of its own and
sees crescent's own 503; txn.ctx carries a value from request to response to log; the
log phase writes a line of its own (HTTP and TCP mode); tcp_request sees the bytes before
any protocol and routes TLS by SNI without terminating it (two real TLS nginx servers)."""

import socket
import subprocess

from conftest import SLOW, addr, curl, free_port, self_signed, wait_until

PHASES = r"""
global { threads = 1 }
defaults {
  mode = "http",
  timeout = { connect = "2s", client = "10s", server = "10s", http_request = "5s" },
}
frontend "public" {
  bind { "%(bind)s" },
  http_request = function(txn)
    txn.ctx.seen = "req:" .. txn.req.path
    if txn.req.path == "/none" then return txn:use_backend("empty") end
  end,
  http_response = function(txn)
    txn.resp:set_header("x-phase", txn.ctx.seen .. " status:" .. txn.resp.status)
    if txn.resp.status == 404 then
      return txn:reply(404, "<p>our own not-found page</p>\n", { ["content-type"] = "text/html" })
    end
    if txn.resp.status == 503 then txn.resp:set_status(503, "Try Later") end
    txn.ctx.seen = txn.ctx.seen .. " resp"
  end,
  log = function(txn, info)
    return string.format("custom %%s %%s %%d %%s Tr=%%s", txn.ctx.seen, info.server,
      info.status, info.termination, tostring(info.Tr >= 0))
  end,
  default_backend = "web",
}
backend "web" {
  http_response = function(txn) txn.resp:add_header("x-backend-hook", "yes") end,
  server "nginx" { "%(nginx)s" },
}
backend "empty" { }
"""


def lines_of(c):
    return [l for l in c.stdout().splitlines() if l.strip()]


def head_and_body(port, path):
    r = curl("-s", "-i", f"http://127.0.0.1:{port}{path}", check=False)
    head, _, body = r.out.replace("\r\n", "\n").partition("\n\n")
    return head.lower(), body


def test_response_phase_and_ctx_and_log(crescent, nginx):
    port = free_port()
    c = crescent(PHASES % {"bind": addr(port), "nginx": addr(nginx.port)}, ports=[port])
    head, body = head_and_body(port, "/index.html")
    assert head.startswith("http/1.1 200"), head
    assert "x-phase: req:/index.html status:200" in head, head
    assert "x-backend-hook: yes" in head, head  # the backend's hook, then the frontend's
    assert body == "<h1>hello from nginx</h1>\n"

    # A 404 from nginx becomes our page (txn:reply in http_response).
    head, body = head_and_body(port, "/missing")
    assert head.startswith("http/1.1 404"), head
    assert body == "<p>our own not-found page</p>\n"
    assert "content-type: text/html" in head

    # crescent's own 503 (a backend without servers) goes through the hook too.
    head, body = head_and_body(port, "/none")
    assert head.startswith("http/1.1 503 try later"), head
    assert "x-phase: req:/none status:503" in head, head

    wait_until(lambda: len(lines_of(c)) >= 3, 5 * SLOW, "three log lines")
    lines = lines_of(c)
    assert lines[0] == "custom req:/index.html resp nginx 200 -- Tr=true", lines
    assert lines[1].startswith("custom req:/missing nginx 404"), lines
    assert lines[2] == "custom req:/none resp <NOSRV> 503 SC Tr=false", lines


def test_response_hook_failure_is_a_500(crescent, nginx):
    port = free_port()
    cfg = f"""
frontend "f" {{
  bind {{ "{addr(port)}" }},
  http_response = function(txn)
    if txn.resp.status == 200 then error("broken on purpose") end
  end,
  default_backend = "web",
}}
backend "web" {{ server "n" {{ "{addr(nginx.port)}" }} }}
"""
    c = crescent(cfg, ports=[port])
    head, _ = head_and_body(port, "/index.html")
    assert head.startswith("http/1.1 500"), head
    wait_until(lambda: "http_response hook failed" in c.stderr(), 5 * SLOW, "the error line")
    assert "broken on purpose" in c.stderr()
    # The failure is that exchange's only: the next request is served.
    head, _ = head_and_body(port, "/missing")
    assert head.startswith("http/1.1 404"), head


def test_log_phase_false_suppresses_and_tcp_mode(crescent, tcp_server):
    echo = tcp_server(lambda conn: conn.sendall(conn.recv(100)))
    port, tport = free_port(), free_port()
    cfg = f"""
frontend "web" {{
  bind {{ "{addr(port)}" }},
  http_request = function(txn) return txn:reply(200, "ok\\n") end,
  log = function(txn, info) if txn.req.path == "/quiet" then return false end end,
}}
frontend "tcp" {{
  mode = "tcp",
  bind {{ "{addr(tport)}" }},
  tcp_request = function(conn) conn.ctx.first = conn:peek(4) end,
  log = function(txn, info)
    return string.format("tcp %s %s %s %d", txn.ctx.first, info.server, info.termination,
      info.bytes)
  end,
  default_backend = "echo",
}}
backend "echo" {{ mode = "tcp", server "e" {{ "{addr(echo.port)}" }} }}
"""
    c = crescent(cfg, ports=[port, tport])
    assert curl("-s", f"http://{addr(port)}/quiet").out == "ok\n"
    assert curl("-s", f"http://{addr(port)}/loud").out == "ok\n"
    with socket.create_connection(("127.0.0.1", tport), timeout=5 * SLOW) as s:
        s.sendall(b"ping-pong")
        got = b""
        while len(got) < 9:
            chunk = s.recv(100)
            assert chunk, got
            got += chunk
        assert got == b"ping-pong"
    wait_until(lambda: any(l.startswith("tcp ") for l in lines_of(c)), 5 * SLOW, "tcp log")
    lines = lines_of(c)
    assert not any("/quiet" in l for l in lines), lines
    assert any('"GET /loud HTTP/1.1"' in l for l in lines), lines  # nil: the default line
    assert "tcp ping e -- 9" in lines, lines


SNI = r"""
global { threads = 1 }
frontend "tls" {
  mode = "tcp",
  bind { "%(bind)s" },
  timeout = { client = "10s" },
  tcp_request = function(conn)
    conn.ctx.sni = conn.sni
    if conn.sni == "a.test" then conn:use_backend("a")
    elseif conn.sni == "b.test" then conn:use_backend("b")
    else conn:reject() end
  end,
  log = function(txn, info) return "sni " .. tostring(txn.ctx.sni) .. " " .. info.server end,
  default_backend = "a",
}
backend "a" { mode = "tcp", server "nginx-a" { "%(a)s" } }
backend "b" { mode = "tcp", server "nginx-b" { "%(b)s" } }
"""


def s_client(port, name):
    r = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
         "-ign_eof"],
        input=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", capture_output=True,
        timeout=30 * SLOW)
    return r.stdout.decode(errors="replace")


def test_sni_routing_without_terminating_tls(crescent, nginx_with, tmp_path):
    """One bind, two TLS nginx servers: the ClientHello's SNI picks the server, and the
    TLS session is the server's own (its certificate, its answer)."""
    a_port, b_port, port = free_port(), free_port(), free_port()
    a_cert, a_key = self_signed(tmp_path, "a.test")
    b_cert, b_key = self_signed(tmp_path, "b.test")
    body = f"""
    server {{ listen 127.0.0.1:{a_port} ssl; ssl_certificate {a_cert};
             ssl_certificate_key {a_key}; location / {{ return 200 "served by a\\n"; }} }}
    server {{ listen 127.0.0.1:{b_port} ssl; ssl_certificate {b_cert};
             ssl_certificate_key {b_key}; location / {{ return 200 "served by b\\n"; }} }}
"""
    nginx_with(body, [a_port, b_port])
    c = crescent(SNI % {"bind": addr(port), "a": addr(a_port), "b": addr(b_port)}, ports=[port])
    out = s_client(port, "a.test")
    assert "CN = a.test" in out and "served by a" in out, out
    out = s_client(port, "b.test")
    assert "CN = b.test" in out and "served by b" in out, out
    # An unknown name is refused: no TLS session at all.
    out = s_client(port, "c.test")
    assert "served by" not in out and "CN = " not in out, out
    wait_until(lambda: "tcp_request rejected" in c.stderr(), 5 * SLOW, "the reject line")
    wait_until(lambda: len(lines_of(c)) >= 2, 5 * SLOW, "two log lines")
    assert lines_of(c)[:2] == ["sni a.test nginx-a", "sni b.test nginx-b"]


def test_tcp_request_in_http_mode_and_plain_bytes(crescent, nginx):
    """tcp_request runs before HTTP too: conn:peek sees the request line, conn.sni is nil
    for a connection that is not TLS, and conn:use_backend is for TCP mode."""
    port = free_port()
    # In HTTP mode each exchange has its own txn: what tcp_request learnt reaches the
    # hooks through a shared dict here, keyed by the client's port.
    cfg = f"""
local seen = crescent.shared("seen")
frontend "f" {{
  bind {{ "{addr(port)}" }},
  tcp_request = function(conn)
    local first = conn:peek(3)
    if first == "BAD" then return conn:reject() end
    local ok, err = pcall(conn.use_backend, conn, "web")
    seen:set(tostring(conn.src_port),
             tostring(conn.tls) .. "/" .. tostring(conn.sni) .. " " .. (ok and "ok" or err))
  end,
  http_request = function(txn)
    return txn:reply(200, (seen:get(tostring(txn.src_port)) or "?") .. "\\n")
  end,
}}
"""
    crescent(cfg, ports=[port])
    out = curl("-s", f"http://{addr(port)}/").out
    assert out.startswith("false/nil "), out
    assert "only in TCP mode" in out, out
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as s:
        s.sendall(b"BAD / HTTP/1.1\r\n\r\n")
        assert s.recv(100) == b""  # rejected: closed without an answer
