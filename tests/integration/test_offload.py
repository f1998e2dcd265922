"""examples/offload-compression.lua: the reference's chain in one process — a gzip
listener on worker 2, a UNIX socket with PROXY v2, the application frontend on worker 1."""

import gzip
import http.client
import os
import socket

import pytest

from conftest import EXAMPLES, SLOW, addr, free_port


@pytest.mark.skipif(os.cpu_count() < 2, reason="the example pins workers to CPUs 0 and 1")
def test_offload_compression_chain(crescent, tmp_path):
    port = free_port()
    sock = tmp_path / "app.sock"
    env = {"CRESCENT_ADDR": addr(port), "APP_SOCK": str(sock)}
    c = crescent(EXAMPLES / "offload-compression.lua", ports=[port], env=env)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW,
                                      source_address=("127.0.0.5", 0))
    conn.request("GET", "/page", headers={"Accept-Encoding": "gzip"})
    r = conn.getresponse()
    raw = r.read()
    assert r.status == 200
    assert r.getheader("content-encoding") == "gzip"
    body = gzip.decompress(raw)
    assert body.startswith(b"<html>") and b"row 2000" in body and len(raw) < len(body) / 4
    # The application frontend saw the real client through the PROXY header.
    assert r.getheader("x-client") == "127.0.0.5"
    conn.request("GET", "/plain")  # same connection, no Accept-Encoding
    r = conn.getresponse()
    assert r.getheader("content-encoding") is None and b"row 2000" in r.read()
    conn.close()
    d = c.wait_http_log(lambda d: d["frontend"] == "app" and d["request"].startswith("GET /page"))
    assert d["client"] == "127.0.0.5", d
    assert "worker 1 pinned to CPU 0" in c.stderr() and "worker 2 pinned to CPU 1" in c.stderr()
