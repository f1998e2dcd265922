"""`source = ...`: connections to servers leave from the configured local addresses, in
turn, and with a port range from its ports in turn (docs/port-exhaustion.md). The server
is a scripted one on 127.0.0.1 that answers each request with the peer address it sees
and then closes: a close-delimited body, so no connection is pooled, and the server is
the side that closes first (its side keeps the TIME_WAIT, so crescent may use the same
source port again for the next round of a port range)."""

import re
import socket

import pytest

from conftest import addr, curl, free_port, read_head, run_crescent

CONFIG = """
global {{ threads = 1 }}
defaults {{
  mode = "{mode}",
  timeout = {{ connect = "2s", client = "10s", server = "10s", http_request = "5s" }},
}}
frontend "public" {{
  bind {{ "{bind}" }},
  default_backend = "app",
}}
backend "app" {{
  source = {source},
  server "app1" {{ "{server}" }},
}}
"""


def peer_reporter(peers):
    """A handler answering every request with "ip:port" of the peer, then closing."""

    def handle(conn):
        ip, port = conn.getpeername()[:2]
        if read_head(conn) is None:
            return  # e.g. TCP mode's readiness probe: connected, sent nothing
        peers.append((ip, port))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                     + f"{ip}:{port}".encode())

    return handle


def start(crescent, tcp_server, mode, source):
    peers = []
    server = tcp_server(peer_reporter(peers))
    public = free_port()
    config = CONFIG.format(mode=mode, bind=addr(public), server=addr(server.port),
                           source=source)
    c = crescent(config, ports=[public])
    return c, server, public, peers


def seen_through(public, n):
    """n requests one after the other, each on its own connection; the peers seen."""
    out = []
    for i in range(n):
        body = curl("-H", "Connection: close", f"http://{addr(public)}/r{i}").out
        m = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+):(\d+)", body)
        assert m, body
        out.append((m.group(1), int(m.group(2))))
    return out


@pytest.mark.parametrize("mode", ["http", "tcp"])
def test_addresses_in_turn(crescent, tcp_server, mode):
    c, server, public, peers = start(crescent, tcp_server, mode, '{ "127.0.0.2", "127.0.0.3" }')
    seen = seen_through(public, 6)
    ips = [ip for ip, _ in seen]
    assert set(ips) == {"127.0.0.2", "127.0.0.3"}, seen
    assert all(a != b for a, b in zip(ips, ips[1:])), seen  # alternating
    if mode == "http":
        # Nothing reached the server before: the first connection takes the first address.
        # (In TCP mode the readiness probe's connection already took one.)
        assert ips[0] == "127.0.0.2", seen
    # The kernel chose the ports (IP_BIND_ADDRESS_NO_PORT): nothing special about them.
    assert all(port != 0 for _, port in seen), seen
    assert peers == seen, (peers, seen)
    assert server.errors == []


def test_port_range_in_turn(crescent, tcp_server):
    c, server, public, peers = start(crescent, tcp_server, "http", '"127.0.0.2:40000-40009"')
    seen = seen_through(public, 13)
    assert all(ip == "127.0.0.2" for ip, _ in seen), seen
    ports = [port for _, port in seen]
    assert all(40000 <= p <= 40009 for p in ports), ports
    # In turn from the start of the range, and round again after the last port.
    assert ports == [40000 + i % 10 for i in range(13)], ports
    assert peers == seen, (peers, seen)
    assert server.errors == []


def hold(*ports):
    """Listening sockets on 127.0.0.2 at these ports: nobody else may bind them."""
    socks = []
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.2", p))
        s.listen(1)
        socks.append(s)
    return socks


def test_taken_ports_are_skipped(crescent, tcp_server):
    held = hold(40020, 40022)
    try:
        c, server, public, peers = start(crescent, tcp_server, "http",
                                         '"127.0.0.2:40020-40023"')
        # 40020 is taken: the same attempt goes on with 40021; then 40022 is skipped too.
        seen = seen_through(public, 2)
        assert seen == [("127.0.0.2", 40021), ("127.0.0.2", 40023)], seen
        assert "cannot connect" not in c.stderr(), c.stderr()  # no attempt failed
    finally:
        for s in held:
            s.close()


def test_every_port_taken_fails_the_attempt(crescent, tcp_server):
    held = hold(40030, 40031)
    try:
        c, server, public, peers = start(crescent, tcp_server, "http",
                                         '"127.0.0.2:40030-40031"')
        r = curl("-i", f"http://{addr(public)}/")
        assert r.out.startswith("HTTP/1.1 503"), r.out
        assert peers == []
        # One line per failed attempt (the first and `retries = 3` more), each naming the
        # backend, the server and the cause.
        lines = [l for l in c.stderr().splitlines() if "cannot connect" in l]
        assert len(lines) == 4, c.stderr()
        for l in lines:
            assert re.search(r'backend "app": server "app1": source 127\.0\.0\.2:4003[01]: '
                             r"cannot connect: address already in use \(2 source choice", l), l
        d = c.wait_http_log(lambda d: d["request"] == "GET / HTTP/1.1")
        assert d["status"] == 503 and d["retries"].lstrip("+") == "3", d
    finally:
        for s in held:
            s.close()


def test_bad_source_is_a_config_error(write_config):
    text = CONFIG.format(mode="http", bind="127.0.0.1:1", server="127.0.0.1:2", source='"127.0.0.2"')
    text = text.replace('server "app1" { "127.0.0.1:2" },',
                        'server "app1" { "127.0.0.1:2", source = "not-an-ip" },')
    path = write_config(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "not-an-ip" in l)
    r = run_crescent(["-c", "-f", path])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(re.escape(str(path)) + f":{line}: " + r'.*server "app1": source "not-an-ip": '
                     r"expected an IP address", r.stderr), r.stderr

    # On the backend: the same check, with the file and a line.
    path = write_config(CONFIG.format(mode="http", bind="127.0.0.1:1", server="127.0.0.1:2",
                                      source='{ "127.0.0.2", "not-an-ip" }'), name="b.lua")
    r = run_crescent(["-c", "-f", path])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(re.escape(str(path)) + r':\d+: .*source "not-an-ip"', r.stderr), r.stderr
