"""Request bodies that Lua services gather in memory have two limits (issue 17 part 7):
one per request (`tune.max_service_body`, 413) and one for the whole process
(`tune.body_budget`, 503), so that many uploads at once cannot take all memory. The
budget is seen in `show info` (BufferedBodyBytes, BodyBudgetRefusals), and what a request
held goes back when it ends."""

import socket

from conftest import SLOW, addr, free_port, recv_all, runtime_info, wait_until

CONFIG = """
global {{
  threads = 1,
  runtime = {{ socket = "{sock}" }},
  tune = {{ max_service_body = "48k", body_budget = "64k" }},
}}
defaults {{ mode = "http", timeout = {{ connect = "2s", client = "20s", server = "20s" }} }}
listen "svc" {{
  bind {{ "{bind}" }},
  service = function(applet)
    local body = applet:receive()
    applet:set_status(200)
    applet:start_response()
    applet:send("got " .. #body .. "\\n")
  end,
}}
"""


def post(port, size, body=None):
    """A whole POST of `size` bytes; returns (status, response body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.sendall(f"POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: {size}\r\n"
                  "Connection: close\r\n\r\n".encode() + (body or b"x" * size))
        data = recv_all(s)
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


def test_per_request_limit_is_413(crescent, tmp_path):
    port, sock = free_port(), tmp_path / "api.sock"
    crescent(CONFIG.format(bind=addr(port), sock=sock), ports=[port])
    assert post(port, 40000) == (200, b"got 40000\n")
    # Content-Length above the limit: refused before a byte of the body is read.
    status, _ = post(port, 49 * 1024 + 1)
    assert status == 413
    # A chunked body that grows past the limit is refused when it does.
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.sendall(b"POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"y" * 8192
        try:
            for _ in range(8):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy answered and closed while we were still sending
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert int(runtime_info(sock)["BufferedBodyBytes"]) == 0


def test_process_budget_is_503_and_is_given_back(crescent, tmp_path):
    port, sock = free_port(), tmp_path / "api.sock"
    crescent(CONFIG.format(bind=addr(port), sock=sock), ports=[port])
    # Upload A sends 40 KB of a 44 KB body and holds: crescent keeps the 40 KB.
    a = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    try:
        a.sendall(b"POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 45056\r\n"
                  b"Connection: close\r\n\r\n" + b"a" * 40960)
        wait_until(lambda: int(runtime_info(sock)["BufferedBodyBytes"]) >= 40960,
                   10 * SLOW, "crescent to hold upload A's first 40 KB")
        # B needs 30 KB more: 40 + 30 > 64 KB, so it is refused with 503.
        assert post(port, 30000)[0] == 503
        info = runtime_info(sock)
        assert int(info["BodyBudgetRefusals"]) >= 1
        # A is not hurt by B's refusal: it finishes and is served.
        a.sendall(b"a" * 4096)
        data = recv_all(a)
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"got 45056\n"), data[:200]
    finally:
        a.close()
    # What A held went back: the same 30 KB upload now fits.
    wait_until(lambda: int(runtime_info(sock)["BufferedBodyBytes"]) == 0, 10 * SLOW,
               "the budget to be given back")
    assert post(port, 30000) == (200, b"got 30000\n")
