"""Response framings from a scripted HTTP server, through crescent, read by curl and by
raw sockets: a body delimited by the server's close, a chunked body with trailers, and
responses a proxy must not pass on (both Content-Length and Transfer-Encoding, a bad
chunk size, a malformed status line) answered 502."""

import hashlib
import os
import socket

import pytest

from conftest import SLOW, addr, curl, free_port, recv_all, request_line

CONFIG = """
global {{ threads = 1 }}
defaults {{
  mode = "http",
  timeout = {{ connect = "2s", client = "10s", server = "5s", http_request = "5s" }},
}}
frontend "public" {{
  bind {{ "{bind}" }},
  default_backend = "app",
}}
backend "app" {{
  server "app1" {{ "{server}" }},
}}
"""

MB = 1024 * 1024
PAYLOAD = os.urandom(10 * MB)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def app(conn):
    """Answers by path: /close, /chunked, /both, /badchunk, /badstatus."""
    line = request_line(conn)
    if line is None:
        return
    path = line.split()[1]
    if path == "/close":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Connection: close\r\n\r\n")
        for i in range(0, len(PAYLOAD), 256 * 1024):
            conn.sendall(PAYLOAD[i:i + 256 * 1024])
    elif path == "/chunked":
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
        for i in range(0, len(PAYLOAD), 100000):
            piece = PAYLOAD[i:i + 100000]
            conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        conn.sendall(b"0\r\nX-Sum: " + SHA.encode() + b"\r\n\r\n")
        request_line(conn)  # keep the connection until the proxy closes it
    elif path == "/both":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n")
        request_line(conn)
    elif path == "/badchunk":
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        request_line(conn)
    elif path == "/badstatus":
        conn.sendall(b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n")
        request_line(conn)


@pytest.fixture
def proxy(crescent, tcp_server):
    server = tcp_server(app)
    port = free_port()
    c = crescent(CONFIG.format(bind=addr(port), server=addr(server.port)), ports=[port])
    c.url = f"http://{addr(port)}"
    c.port = port
    return c


def test_body_until_close(proxy, tmp_path):
    out = tmp_path / "close.bin"
    r = curl("-o", out, "-w", "%{http_code}", f"{proxy.url}/close")
    assert r.out == "200"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == SHA, f"{out.stat().st_size} bytes"


def dechunk(raw):
    """The payload of a chunked body and the bytes after its last chunk (the trailers)."""
    body, pos = [], 0
    while True:
        eol = raw.index(b"\r\n", pos)
        size = int(raw[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            return b"".join(body), raw[pos:]
        body.append(raw[pos:pos + size])
        pos += size + 2


def test_body_until_close_slow_reader(proxy):
    """The client reads slowly: the proxy holds the tail when the server closes, and must
    still deliver all of it before closing. An HTTP/1.1 client gets the close-delimited
    body chunked (its end is then explicit)."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10 * SLOW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_all(s, timeout=30 * SLOW)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower(), head
    body, _ = dechunk(body)
    assert len(body) == len(PAYLOAD), f"{len(body)} of {len(PAYLOAD)} bytes"
    assert hashlib.sha256(body).hexdigest() == SHA


def test_body_until_close_http10(proxy):
    """An HTTP/1.0 client gets a close-delimited body as it is, then the close."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10 * SLOW)
    s.sendall(b"GET /close HTTP/1.0\r\nHost: x\r\n\r\n")
    data = recv_all(s, timeout=30 * SLOW)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding" not in head.lower(), head
    assert hashlib.sha256(body).hexdigest() == SHA


def test_chunked_with_trailers(proxy, tmp_path):
    out = tmp_path / "chunked.bin"
    r = curl("-v", "--raw", "-o", out, "-w", "%{http_code}", f"{proxy.url}/chunked")
    assert r.out == "200", r.err
    # Decode the chunked framing as received, then check body and trailer.
    body, trailers = dechunk(out.read_bytes())
    assert hashlib.sha256(body).hexdigest() == SHA
    assert f"X-Sum: {SHA}".encode().lower() in trailers.lower(), trailers


@pytest.mark.parametrize("path", ["/both", "/badchunk", "/badstatus"])
def test_bad_response_502(proxy, path):
    r = curl("-o", os.devnull, "-w", "%{http_code}", f"{proxy.url}{path}", check=False)
    if path == "/badchunk":
        # The head was fine and may already be on its way: a 502 if not, else the
        # connection is cut (curl reports an error), never a clean 200.
        assert r.out == "502" or r.returncode != 0, (r.out, r.err)
    else:
        assert r.out == "502", (r.out, r.err)
    d = proxy.wait_http_log(lambda d: d["request"] == f"GET {path} HTTP/1.1")
    if path == "/badchunk":
        assert d["state"][0] in "PS", d  # refused by the proxy, or the server side cut
    else:
        assert d["status"] == 502, d
        assert d["state"][:2] == "PH", d  # HAProxy's flags for an invalid response
