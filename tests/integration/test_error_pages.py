"""Error pages (docs/config.md, "Error pages"): HAProxy's raw `errorfiles` on defaults,
frontend and backend (backend first, then frontend, then defaults) and Lua `error_page`
functions, served for every response crescent makes itself — each status produced for real:
a malformed or over-long head (400), txn:deny (403, 404, 421, 429), a slow head (408), a
body above tune.max_service_body (413), a hook that raises (500), an unknown transfer coding
(501), an invalid server response (502), no server / a refused connection (503, as
HAProxy), a server that hangs (504). The files are checked at `-c`."""

import socket
import time

import pytest

from conftest import SLOW, addr, curl, free_port, run_crescent, wait_until

STATUSES = [400, 403, 404, 408, 413, 421, 429, 500, 501, 502, 503, 504]

CONFIG = r"""
global { threads = 1, tune = { max_service_body = "1k" } }
defaults {
  mode = "http",
  timeout = { connect = "1s", client = "10s", server = "1s", http_request = "1s" },
  retries = 0,
  errorfiles = { %(defaults_files)s },
}
frontend "public" {
  bind { "%(bind)s" },
  errorfiles = { %(frontend_files)s },
  http_request = function(txn)
    local p = txn.req.path
    if p == "/deny" then return txn:deny() end
    if p == "/deny404" then return txn:deny(404) end
    if p == "/deny421" then return txn:deny(421) end
    if p == "/deny429" then return txn:deny(429) end
    if p == "/raise" then error("boom") end
    if p == "/none" then return txn:use_backend("empty") end
    if p == "/own" then return txn:use_backend("own") end
    if p == "/bad" then return txn:use_backend("bad") end
    if p == "/hang" then return txn:use_backend("hang") end
    if p == "/refused" then return txn:use_backend("refused") end
    if p == "/svc" then return txn:use_backend("svc") end
  end,
  default_backend = "empty",
}
frontend "plain" {
  bind { "%(bind2)s" },
  default_backend = "empty",
}
backend "empty" { }
backend "own" { errorfiles = { [503] = "%(own503)s" } }
backend "bad" { server "s" { "%(bad)s" } }
backend "hang" { server "s" { "%(hang)s" } }
backend "refused" { server "s" { "%(dead)s" } }
backend "svc" { service = function(applet) applet:send("svc") end }
"""


def page_file(directory, status, level):
    p = directory / f"{level}-{status}.http"
    body = f"<p>{level} page for {status}</p>\n"
    p.write_bytes(
        f"HTTP/1.1 {status} Level {level}\r\ncontent-type: text/html\r\n"
        f"x-page: {level}\r\ncontent-length: 3\r\n\r\n{body}".encode())
    return p


def files_table(directory, level, statuses):
    return ", ".join(f'[{s}] = "{page_file(directory, s, level)}"' for s in statuses)


def raw(port, data, wait_close=True):
    """Sends `data`, returns everything the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b


def split(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        n, v = line.split(":", 1)
        headers[n.strip().lower()] = v.strip()
    return lines[0], headers, body


def get(port, path, *extra):
    r = curl("-s", "-i", *extra, f"http://127.0.0.1:{port}{path}", check=False)
    return split(r.stdout)


@pytest.fixture
def servers(tcp_server, mute_server):
    def bad(conn):
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n")

    return {"bad": tcp_server(bad).port, "hang": mute_server, "dead": free_port()}


def start(crescent, tmp_path, servers, frontend_statuses):
    port, port2 = free_port(), free_port()
    cfg = CONFIG % {
        "bind": addr(port), "bind2": addr(port2),
        "defaults_files": files_table(tmp_path, "defaults", STATUSES),
        "frontend_files": files_table(tmp_path, "frontend", frontend_statuses),
        "own503": page_file(tmp_path, 503, "backend"),
        "bad": addr(servers["bad"]), "hang": addr(servers["hang"]),
        "dead": addr(servers["dead"]),
    }
    return crescent(cfg, ports=[port, port2]), port, port2


def produce(port, status):
    """Makes crescent answer `status` by itself, for real; returns (status line, headers,
    body) as the client got them."""
    if status == 400:  # a field line with a space in its name
        return split(raw(port, b"GET / HTTP/1.1\r\nhost: x\r\nbad name: y\r\n\r\n"))
    if status == 408:  # a head that never ends, past timeout http_request
        return split(raw(port, b"GET / HTTP/1.1\r\nhost: x\r\n"))
    if status == 413:
        return get(port, "/svc", "-d", "x" * 4096)
    if status == 501:
        return split(raw(port, b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n"))
    path = {403: "/deny", 404: "/deny404", 421: "/deny421", 429: "/deny429", 500: "/raise",
            502: "/bad", 503: "/none", 504: "/hang"}[status]
    return get(port, path)


def test_every_status_gets_the_frontend_page(crescent, tmp_path, servers):
    c, port, _ = start(crescent, tmp_path, servers, STATUSES)
    for status in STATUSES:
        line, headers, body = produce(port, status)
        assert line == f"HTTP/1.1 {status} Level frontend", (status, line)
        assert headers["x-page"] == "frontend", (status, headers)
        assert body == f"<p>frontend page for {status}</p>\n".encode(), (status, body)
        # crescent frames the body itself: the file's wrong content-length is not sent
        assert headers["content-length"] == str(len(body)), (status, headers)
    # An oversized header (a head past tune.bufsize) is a 400 too, with the same page.
    line, headers, _ = split(raw(port, b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20000
                                 + b"\r\n\r\n"))
    assert line == "HTTP/1.1 400 Level frontend" and headers["x-page"] == "frontend", line


def test_backend_then_frontend_then_defaults(crescent, tmp_path, servers):
    # The frontend has pages for 503 and 403 only; the rest come from the defaults.
    c, port, port2 = start(crescent, tmp_path, servers, [403, 503])
    assert get(port, "/none")[1]["x-page"] == "frontend"
    assert get(port, "/own")[1]["x-page"] == "backend"  # the backend's own wins
    assert get(port, "/deny")[1]["x-page"] == "frontend"
    assert get(port, "/deny429")[1]["x-page"] == "defaults"
    assert produce(port, 400)[1]["x-page"] == "defaults"
    assert get(port2, "/anything")[1]["x-page"] == "defaults"  # a frontend without pages


def test_refused_connection_is_503_sc(crescent, tmp_path, servers):
    c, port, _ = start(crescent, tmp_path, servers, [])
    line, headers, _ = get(port, "/refused")
    assert line.startswith("HTTP/1.1 503"), line
    d = c.wait_http_log(lambda d: d["request"].startswith("GET /refused"))
    assert d["status"] == 503 and d["state"].startswith("SC"), d
    line, _, _ = get(port, "/bad")
    assert line.startswith("HTTP/1.1 502"), line  # an invalid response stays 502
    d = c.wait_http_log(lambda d: d["request"].startswith("GET /bad"))
    assert d["state"].startswith("SH") or d["state"].startswith("PH"), d


LUA_PAGES = r"""
global { threads = 1 }
defaults {
  mode = "http", timeout = { connect = "1s", client = "10s", server = "1s" },
  error_page = function(status, txn)
    return { status, { ["x-page"] = "defaults-lua" }, "defaults saw " .. status }
  end,
}
frontend "public" {
  bind { "%(bind)s" },
  error_page = function(status, txn)
    if txn == nil then
      return { status = status, headers = { ["x-page"] = "lua" }, body = "no request " .. status }
    end
    if txn.req.path == "/pass" then return nil end
    if txn.req.path == "/raise-in-page" then error("page bug") end
    if txn.req.path == "/maint" then
      return { 200, { ["content-type"] = "text/plain" }, "maintenance\n" }
    end
    return { status, { ["x-page"] = "lua" }, status .. " for " .. txn.req.path }
  end,
  http_request = function(txn)
    if txn.req.path == "/deny" then return txn:deny(429) end
  end,
  default_backend = "empty",
}
backend "empty" { }
"""


def test_lua_error_page(crescent):
    port = free_port()
    c = crescent(LUA_PAGES % {"bind": addr(port)}, ports=[port])
    line, headers, body = get(port, "/x")
    assert line.startswith("HTTP/1.1 503") and headers["x-page"] == "lua", (line, headers)
    assert body == b"503 for /x"
    line, headers, body = get(port, "/deny")
    assert line.startswith("HTTP/1.1 429") and body == b"429 for /deny", (line, body)
    # The function may change the status (a maintenance page).
    line, headers, body = get(port, "/maint")
    assert line.startswith("HTTP/1.1 200") and body == b"maintenance\n", (line, body)
    # nil passes on to the next level: the defaults' function.
    line, headers, body = get(port, "/pass")
    assert headers["x-page"] == "defaults-lua" and body == b"defaults saw 503", (headers, body)
    # A function that raises is logged and the next level serves.
    line, headers, body = get(port, "/raise-in-page")
    assert line.startswith("HTTP/1.1 503") and headers["x-page"] == "defaults-lua"
    wait_until(lambda: 'frontend "public": error_page for 503 failed: ' in c.stderr()
               and "page bug" in c.stderr(), 5 * SLOW, "the error_page failure logged")
    # A request that could not be read: txn is nil.
    line, headers, body = split(raw(port, b"GET / HTTP/1.1\r\nhost: x\r\nbad name: y\r\n\r\n"))
    assert line.startswith("HTTP/1.1 400") and body == b"no request 400", (line, body)


@pytest.mark.parametrize("content,expect", [
    (None, 'cannot read "'),
    (b"HTTP/1.1 500 Oops\r\ncontent-type: text/html\r\n\r\nx", "has status 500, configured for 503"),
    (b"<html>\r\nnot a response\r\n\r\n", "not an HTTP response"),
    (b"HTTP/1.1 503 X\r\ncontent-type: text/html\r\n", "no complete response head"),
    (b"HTTP/1.1 503 X\r\n\r\n" + b"x" * 20000, "above tune.bufsize (16384)"),
])
def test_bad_errorfile_is_refused_at_check(tmp_path, content, expect):
    page = tmp_path / "503.http"
    if content is not None:
        page.write_bytes(content)
    cfg = tmp_path / "c.lua"
    cfg.write_text(f"""frontend "f" {{
  bind {{ "127.0.0.1:1" }},
  errorfiles = {{
    [503] = "{page}",
  }},
}}
""")
    r = run_crescent(["-c", "-f", str(cfg)])
    assert r.returncode != 0, r.stdout
    msg = r.stderr
    assert f"{cfg}:4: frontend \"f\": errorfiles[503]: " in msg and expect in msg, msg


def test_unknown_status_is_refused_at_check(tmp_path):
    cfg = tmp_path / "c.lua"
    cfg.write_text('defaults { errorfiles = { [200] = "x.http" } }\n')
    r = run_crescent(["-c", "-f", str(cfg)])
    assert r.returncode != 0
    assert f"{cfg}:1: " in r.stderr and "not a status crescent answers itself" in r.stderr, r.stderr
