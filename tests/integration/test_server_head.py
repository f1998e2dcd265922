"""A server's response head that reaches crescent over several reads, with body bytes in
the read that completes it, is a valid response (issue 17 part 2: an 8 KB head split in
the middle, its second half arriving with a 200 KB body, got "502 response head too
large"). The split is made certain, not hoped for: the server sends the first piece and
waits until crescent's socket has no unread bytes (its receive queue in /proc/net/tcp)
before it sends the rest. Split points are drawn at random (seeded) over the head, so the
head reader is tried at many read boundaries."""

import random
import socket
import time

from conftest import SLOW, addr, free_port, read_head, recv_all

CONFIG = """
global {{ threads = 1 }}
defaults {{
  mode = "http",
  timeout = {{ connect = "2s", client = "10s", server = "10s" }},
}}
frontend "public" {{
  bind {{ "{bind}" }},
  default_backend = "app",
}}
backend "app" {{
  server "s1" {{ "{server}" }},
}}
"""


def rx_queue(local_port, remote_port):
    """Unread bytes in the receive queue of the socket 127.0.0.1:local_port ->
    127.0.0.1:remote_port, or None when there is no such socket."""
    want_local = f"0100007F:{local_port:04X}"
    want_remote = f"0100007F:{remote_port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return int(fields[4].split(":")[1], 16)
    return None


def wait_peer_read(conn, timeout=10 * SLOW):
    """Waits until the peer of `conn` (crescent, on this machine) has read every byte
    sent so far: the kernel holds none of them for it any more."""
    peer_port = conn.getpeername()[1]
    my_port = conn.getsockname()[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rx_queue(peer_port, my_port) == 0:
            return
        time.sleep(0.002)  # poll interval of an event wait (bounded by the deadline)
    raise AssertionError("crescent did not read the first piece of the response head")


def make_head(framing, head_size=8192):
    """A response head of about head_size bytes (a handful of long fields: under the
    101-field limit)."""
    head = "HTTP/1.1 200 OK\r\n" + framing
    i = 0
    while len(head) < head_size - 100:
        pad = min(1000, head_size - 100 - len(head))
        head += f"X-Pad-{i}: {'p' * pad}\r\n"
        i += 1
    return (head + "\r\n").encode()


def chunked(body, pieces):
    out = b""
    for p in pieces:
        out += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n\r\n"


def start(crescent, tcp_server, cases):
    """cases: a list of (wire bytes, split offset) served in order, one per connection."""
    todo = list(cases)

    def handler(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            if read_head(conn) is None:
                return
            wire, split = todo.pop(0)
            conn.sendall(wire[:split])
            wait_peer_read(conn)
            conn.sendall(wire[split:])

    server = tcp_server(handler)
    port = free_port()
    crescent(CONFIG.format(bind=addr(port), server=addr(server.port)), ports=[port])
    return server, port


def fetch(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        data = recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def decode_chunked(body):
    out = b""
    while True:
        line, _, rest = body.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            return out
        out += rest[:n]
        body = rest[n + 2:]


def test_head_split_in_the_middle_with_a_200k_body(crescent, tcp_server):
    """The issue's shape: 8 KB head split at 4 KB, then the rest with a 200 KB body."""
    body = bytes(random.Random(1).getrandbits(8) for _ in range(200 * 1024))
    head = make_head(f"Content-Length: {len(body)}\r\n")
    server, port = start(crescent, tcp_server, [(head + body, len(head) // 2)])
    status_line, got = fetch(port)
    assert status_line.startswith(b"HTTP/1.1 200"), status_line[:200]
    assert got == body
    assert not server.errors, server.errors


def test_head_reader_at_random_read_boundaries(crescent, tcp_server):
    """Seeded random split points over the head (and into the body), for a
    Content-Length and a chunked response: every one is served whole."""
    rng = random.Random(17)
    cases, bodies = [], []
    for i in range(24):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64 * 1024)))
        if i % 2 == 0:
            head = make_head(f"Content-Length: {len(body)}\r\n", rng.randint(200, 12000))
            wire = head + body
        else:
            head = make_head("Transfer-Encoding: chunked\r\n", rng.randint(200, 12000))
            cut = rng.randint(0, len(body))
            wire = head + chunked(body, [p for p in (body[:cut], body[cut:]) if p])
        split = rng.randint(1, len(head) + min(64, len(wire) - len(head)) - 1)
        cases.append((wire, split))
        bodies.append(body)
    server, port = start(crescent, tcp_server, cases)
    for i, body in enumerate(bodies):
        status_line, got = fetch(port)
        assert status_line.startswith(b"HTTP/1.1 200"), (i, cases[i][1], status_line[:200])
        if i % 2 == 1:
            got = decode_chunked(got)
        assert got == body, (i, cases[i][1], len(got), len(body))
    assert not server.errors, server.errors
