"""Idle server connections (issue 17, part 8): a server that closes idle keep-alive
connections after 1 s, as Node.js does after 5 s, under a load of POSTs and GETs with
pauses around that second: http_reuse "safe" sends every POST (a body) and every first
request on a connection of its own, a GET that meets a connection closed under it is
retried, and not one request fails. `pool.idle_timeout` and the server's `Keep-Alive:
timeout=` bound how long crescent keeps a connection; a connect retry to the same server
waits (HAProxy's turn-around), a redispatch does not."""

import concurrent.futures
import http.client
import random
import socket
import threading
import time

from conftest import SLOW, addr, free_port, wait_until


class NodeLike:
    """An HTTP/1.1 keep-alive server that closes a connection idle for `idle` seconds
    (Node's server.keepAliveTimeout), without saying so unless `announce` (then it sends
    `Keep-Alive: timeout=<announce>`). `peer_closes` counts the connections the proxy
    closed before the server did."""

    def __init__(self, idle=1.0, announce=None, race_after=None):
        self.idle = idle
        self.announce = announce
        # A request that reaches a connection idle for `race_after` seconds or more is
        # met with a close and no answer: the race of a server closing an idle
        # connection while the proxy reuses it, made certain.
        self.race_after = race_after
        self.raced = 0
        self.connections = 0  # accepted so far
        self.open = 0         # still open
        self.requests = 0
        self.peer_closes = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        buf = b""
        last = time.monotonic()
        try:
            while True:
                conn.settimeout(self.idle)
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)  # idle past `idle`: socket.timeout, closed
                    if not chunk:
                        if not buf:
                            with self.lock:
                                self.peer_closes += 1
                        return
                    buf += chunk
                if self.race_after is not None and time.monotonic() - last >= self.race_after:
                    with self.lock:
                        self.raced += 1
                    return
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                conn.settimeout(10)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                with self.lock:
                    self.requests += 1
                out = b"got %d" % len(body)
                ka = b"Keep-Alive: timeout=%d\r\n" % self.announce if self.announce else b""
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" %
                             (len(out), ka, out))
                last = time.monotonic()
        except (socket.timeout, OSError):
            pass
        finally:
            conn.close()
            with self.lock:
                self.open -= 1

    def close(self):
        self.closing = True
        self.sock.close()


CONFIG = """
global {{ threads = 2 }}
defaults {{ mode = "http", timeout = {{ connect = "2s", client = "30s", server = "30s" }} }}
frontend "f" {{ bind {{ "{bind}" }}, default_backend = "b" }}
backend "b" {{
  {extra}
  server "node" {{ "{server}" }},
}}
"""


def request(conn, method, path, body=None):
    conn.request(method, path, body=body)
    r = conn.getresponse()
    return r.status, r.read()


def test_node_like_idle_close_under_post_load_loses_nothing(crescent):
    """Every request that meets a server connection idle for 1 s or more is refused by the
    server (closed, unanswered): POSTs never reuse one (http_reuse "safe"), GETs that do
    are sent again on a new connection: no failure, and the race did happen."""
    node = NodeLike(idle=30.0, race_after=1.0)
    port = free_port()
    try:
        crescent(CONFIG.format(bind=addr(port), server=addr(node.port), extra=""), ports=[port])
        failures = []

        def client(n):
            rng = random.Random(n)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * SLOW)
            try:
                for i in range(12):
                    # Pauses around the server's idle second: the connections crescent
                    # keeps are closed under it, some just as it would reuse them.
                    time.sleep(rng.choice([0, 0.05, 0.9, 1.0, 1.05, 1.1]))
                    if i % 3 == 2:
                        status, body = request(c, "GET", f"/g{n}-{i}")
                        want = b"got 0"
                    else:
                        payload = b"x" * rng.randint(1, 20000)
                        status, body = request(c, "POST", f"/p{n}-{i}", payload)
                        want = b"got %d" % len(payload)
                    if (status, body) != (200, want):
                        failures.append((n, i, status, body[:80]))
            except Exception as e:  # a reset or a close the client sees
                failures.append((n, "exception", repr(e)))
            finally:
                c.close()

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(client, range(16)))
        assert failures == [], failures
        assert node.requests == 16 * 12
        assert node.raced > 0, "no request met a connection the server had given up"
    finally:
        node.close()


def test_pool_idle_timeout_and_keep_alive_timeout_bound_reuse(crescent):
    """With pool.idle_timeout = 200 ms, a connection idle longer is not reused (the server
    sees a new one); within it, it is. The same bound comes from a server that announces
    `Keep-Alive: timeout=1` (kept up to 900 ms) with a longer pool.idle_timeout."""
    for extra, node in (('pool = { idle_timeout = "200ms" }, http_reuse = "always",',
                         NodeLike(idle=30.0)),
                        ('pool = { idle_timeout = "30s" }, http_reuse = "always",',
                         NodeLike(idle=30.0, announce=1))):
        pooled_connection_is_let_go(crescent, node, extra)


def pooled_connection_is_let_go(crescent, node, extra):
    port = free_port()
    try:
        crescent(CONFIG.format(bind=addr(port), server=addr(node.port), extra=extra),
                 ports=[port])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
        assert request(c, "GET", "/a") == (200, b"got 0")
        # Back to back on one client connection (one worker): the pooled one serves it.
        assert request(c, "GET", "/b") == (200, b"got 0")
        assert node.connections == 1
        # The pool lets go of the connection (after 200 ms, or 900 ms for a server that
        # announced 1 s): the server sees crescent close it.
        wait_until(lambda: node.peer_closes == 1, 10 * SLOW, "crescent closing the idle one")
        assert request(c, "GET", "/c") == (200, b"got 0")
        assert node.connections == 2
        c.close()
    finally:
        node.close()


def test_connect_retry_to_the_same_server_waits(crescent):
    """A refused connect is tried again after min(timeout connect, 1 s): three retries of a
    server that refuses take their pauses before the 503 (HAProxy's turn-around), and with
    redispatch the last attempt goes at once to the other server."""
    dead = free_port()  # nothing listens there
    node = NodeLike(idle=30.0)
    port, port2 = free_port(), free_port()
    try:
        cfg = f"""
global {{ threads = 1 }}
defaults {{ mode = "http", timeout = {{ connect = "300ms", client = "30s", server = "30s" }} }}
frontend "f" {{ bind {{ "{addr(port)}" }}, default_backend = "b" }}
backend "b" {{ retries = 2, server "dead" {{ "{addr(dead)}" }} }}
frontend "f2" {{ bind {{ "{addr(port2)}" }}, default_backend = "b2" }}
backend "b2" {{
  retries = 1, redispatch = true, balance = "first",
  server "dead" {{ "{addr(dead)}" }},
  server "node" {{ "{addr(node.port)}" }},
}}
"""
        c = crescent(cfg, ports=[port, port2])
        t0 = time.monotonic()
        assert request(http.client.HTTPConnection("127.0.0.1", port, timeout=30 * SLOW),
                       "GET", "/")[0] == 503
        took = time.monotonic() - t0
        assert took >= 0.6, took  # two pauses of min(300 ms, 1 s): the lower bound only
        d = c.wait_http_log(lambda d: d["frontend"] == "f")
        assert d["retries"] == "2", d
        # Redispatch: one attempt at "dead", then at once "node".
        status, body = request(http.client.HTTPConnection("127.0.0.1", port2, timeout=30 * SLOW),
                               "GET", "/")
        assert (status, body) == (200, b"got 0")
    finally:
        node.close()
