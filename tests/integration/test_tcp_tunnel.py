"""TCP mode with a scripted server: bytes pass unchanged both ways at volume, a FIN in
one direction leaves the other one flowing (half-close), the tunnel timeout counts
silence in both directions, and a refused connect ends in a tcplog line."""

import hashlib
import os
import socket
import threading
import time

import pytest

from conftest import SLOW, addr, free_port, recv_all

CONFIG = """
global {{ threads = 1 }}
defaults {{
  mode = "tcp",
  timeout = {{ connect = "2s", client = "10s", server = "10s", tunnel = "{tunnel}",
              client_fin = "5s", server_fin = "5s" }},
  retries = 2,
}}
frontend "tcp" {{
  bind {{ "{bind}" }},
  default_backend = "be",
}}
backend "be" {{
  server "s1" {{ "{server}" }},
}}
frontend "nowhere" {{
  bind {{ "{bind_refused}" }},
  default_backend = "gone",
}}
backend "gone" {{
  retries = 1,
  server "gone" {{ "{refused}" }},
}}
"""

MB = 1024 * 1024


@pytest.fixture
def start(crescent, tcp_server):
    """start(handler, tunnel="10s") -> crescent with .port (to handler) and .refused_port."""

    def go(handler, tunnel="10s"):
        server = tcp_server(handler)
        port, refused_port = free_port(), free_port()
        cfg = CONFIG.format(tunnel=tunnel, bind=addr(port), server=addr(server.port),
                            bind_refused=addr(refused_port), refused=addr(free_port()))
        c = crescent(cfg, ports=[port, refused_port])
        c.port, c.refused_port, c.server = port, refused_port, server
        return c

    return go


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)


def test_bulk_both_ways_at_once(start):
    """20 MB sent while 20 MB come back, three times: the echo server only reads as fast
    as it can write, so this only finishes if the proxy relays both directions under
    back-pressure; and every byte must arrive even though the server's FIN follows its
    last bytes closely (the proxy must flush before it closes)."""

    def echo(conn):
        while True:
            b = conn.recv(1 << 16)
            if not b:
                conn.shutdown(socket.SHUT_WR)
                return
            conn.sendall(b)

    c = start(echo)
    for attempt in range(3):
        data = os.urandom(20 * MB)
        s = connect(c.port)
        got = {}

        def reader():
            got["data"] = recv_all(s, timeout=30 * SLOW)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(60 * SLOW)
        s.close()
        assert not t.is_alive(), "echo did not finish"
        back = got["data"]
        assert len(back) == len(data) and back == data, (
            f"attempt {attempt}: {len(back)} of {len(data)} bytes came back"
            f"{' (the tail is missing)' if data.startswith(back) else ' (corrupted)'}"
        )
    d = c.wait_tcp_log(lambda d: d["frontend"] == "tcp" and int(d["bytes"].lstrip("+")) > 0)
    assert (d["backend"], d["server"]) == ("be", "s1"), d
    assert int(d["bytes"].lstrip("+")) == 20 * MB, d


def test_client_half_close(start):
    """The client sends and shuts down its side; the server still answers afterwards."""

    def server(conn):
        body = recv_all(conn)  # up to the client's FIN, relayed by the proxy
        time.sleep(0.3)
        conn.sendall(hashlib.sha256(body).hexdigest().encode() + b"\n")
        time.sleep(0.3)
        conn.sendall(b"tail\n")

    c = start(server)
    data = os.urandom(5 * MB)
    s = connect(c.port)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    reply = recv_all(s)
    s.close()
    assert reply == hashlib.sha256(data).hexdigest().encode() + b"\ntail\n"


def test_server_half_close(start):
    """The server says its piece and shuts down its side; the client can still send."""
    received = []

    def server(conn):
        conn.sendall(b"greeting\n")
        conn.shutdown(socket.SHUT_WR)
        received.append(recv_all(conn))

    c = start(server)
    s = connect(c.port)
    assert recv_all(s) == b"greeting\n"  # the server's FIN reached us
    time.sleep(0.3)
    s.sendall(b"after the server's FIN\n")
    s.shutdown(socket.SHUT_WR)
    s.settimeout(10 * SLOW)
    assert s.recv(10) == b""
    s.close()
    # (received also holds b"" from the readiness probe's connection.)
    deadline = time.monotonic() + 10 * SLOW
    while b"after the server's FIN\n" not in received and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b"after the server's FIN\n" in received, received


def test_silent_tunnel_closed_after_timeout(start):
    def server(conn):
        conn.settimeout(10)
        try:
            recv_all(conn)
        except OSError:
            pass

    c = start(server, tunnel="1s")
    s = connect(c.port)
    s.sendall(b"x")  # the server connection exists and has seen traffic once
    t0 = time.monotonic()
    try:
        assert recv_all(s) == b""
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - t0
    s.close()
    assert 0.8 <= elapsed <= 3 * SLOW, f"closed after {elapsed:.2f}s, tunnel timeout is 1s"


def test_client_traffic_alone_keeps_tunnel_open(start):
    def server(conn):
        n = 0
        while n < 10:
            b = conn.recv(100)
            if not b:
                return
            n += len(b)
        conn.sendall(b"alive\n")

    c = start(server, tunnel="1s")
    s = connect(c.port)
    t0 = time.monotonic()
    for _ in range(10):
        s.sendall(b"x")
        time.sleep(0.3)
    s.settimeout(5 * SLOW)
    assert s.recv(100) == b"alive\n"
    assert time.monotonic() - t0 >= 3.0
    s.close()


def test_server_traffic_alone_keeps_tunnel_open(start):
    def server(conn):
        for i in range(10):
            time.sleep(0.3)
            conn.sendall(b"t")
        conn.sendall(b"done\n")

    c = start(server, tunnel="1s")
    s = connect(c.port)
    s.sendall(b"go")  # the proxy connects on accept; this only proves the path works
    t0 = time.monotonic()
    got = recv_all(s, timeout=10 * SLOW)
    s.close()
    assert got == b"t" * 10 + b"done\n"
    assert time.monotonic() - t0 >= 3.0


def test_refused_connect_logged(start):
    c = start(lambda conn: None)
    s = connect(c.refused_port)
    s.settimeout(10 * SLOW)
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    s.close()
    d = c.wait_tcp_log(lambda d: d["frontend"] == "nowhere")
    assert (d["backend"], d["server"]) == ("gone", "gone"), d
    assert d["state"] == "SC", d
