"""WebSockets through examples/websocket.lua with Debian's python3-websockets on both
ends: routing by ACL, echo, and the tunnel timeout (inactivity in both directions:
closed after silence, kept open by traffic in either direction alone)."""

import asyncio
import time

import pytest
import websockets

from conftest import EXAMPLES, SLOW, addr, curl, free_port

TUNNEL_TIMEOUT = 1.0  # seconds, given to the example as WS_TUNNEL_TIMEOUT


@pytest.fixture
def proxy(crescent, nginx, ws_server):
    port = free_port()
    env = {
        "CRESCENT_ADDR": addr(port),
        "WS_ADDR": addr(ws_server.port),
        "WEB_ADDR": addr(nginx.port),
        "WS_TUNNEL_TIMEOUT": f"{int(TUNNEL_TIMEOUT * 1000)}ms",
    }
    c = crescent(EXAMPLES / "websocket.lua", ports=[port], env=env)
    c.port = port
    c.ws = f"ws://{addr(port)}/websockets"
    return c


def connect(url):
    # No pings: the library's keep-alive would be traffic the timeout tests must not see.
    return websockets.connect(url, ping_interval=None, open_timeout=5 * SLOW, close_timeout=1,
                              max_size=8 * 1024 * 1024)


def run(coro, timeout=30 * SLOW):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_routing(proxy):
    # Not an upgrade, or not under /websockets: the web backend (nginx) answers.
    r = curl("-i", f"http://{addr(proxy.port)}/index.html")
    assert r.out.startswith("HTTP/1.1 200") and "hello from nginx" in r.out, r.out
    r = curl("-i", f"http://{addr(proxy.port)}/websockets/echo")
    assert r.out.startswith("HTTP/1.1 404"), r.out  # nginx has no such file
    assert "nginx" in r.out
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /websockets/echo HTTP/1.1")
    assert (d["backend"], d["server"]) == ("web", "web1"), d


def test_echo(proxy):
    async def go():
        async with connect(f"{proxy.ws}/echo") as ws:
            for msg in ["hello", "x" * 70000, b"\x00\x01binary\xff", "é" * 1000]:
                await ws.send(msg)
                assert await ws.recv() == msg
            big = bytes(range(256)) * 4096  # 1 MiB
            await ws.send(big)
            assert await ws.recv() == big

    run(go())
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /websockets/echo HTTP/1.1")
    assert d["status"] == 101, d
    assert (d["backend"], d["server"]) == ("ws", "ws1"), d


def test_silent_tunnel_closed_after_timeout(proxy):
    async def go():
        async with connect(f"{proxy.ws}/silent") as ws:
            t0 = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10 * SLOW)
            return time.monotonic() - t0

    elapsed = run(go())
    assert 0.8 * TUNNEL_TIMEOUT <= elapsed <= 3 * SLOW, f"closed after {elapsed:.2f}s"


def test_client_to_server_traffic_keeps_tunnel_open(proxy):
    async def go():
        async with connect(f"{proxy.ws}/sink") as ws:
            t0 = time.monotonic()
            sent = 0
            while time.monotonic() - t0 < 3.0:
                await ws.send("x")
                sent += 1
                await asyncio.sleep(0.3)
            await ws.send("status?")
            reply = await asyncio.wait_for(ws.recv(), 5 * SLOW)
            return sent, reply, time.monotonic() - t0

    sent, reply, elapsed = run(go())
    assert reply == f"alive {sent}"
    assert elapsed >= 3.0


def test_server_to_client_traffic_keeps_tunnel_open(proxy):
    async def go():
        async with connect(f"{proxy.ws}/tick") as ws:
            t0 = time.monotonic()
            got = []
            while True:
                msg = await asyncio.wait_for(ws.recv(), 5 * SLOW)
                got.append(msg)
                if msg == "done":
                    return got, time.monotonic() - t0

    got, elapsed = run(go())
    assert got == [f"tick {i}" for i in range(11)] + ["done"]
    assert elapsed >= 3.0
