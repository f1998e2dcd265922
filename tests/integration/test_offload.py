"""The reference's offload chains in one process: examples/offload-compression.lua (a gzip
listener on worker 2) and examples/offload-tls.lua (a TLS listener on worker 2 whose PROXY
v2 header carries the TLS facts), each over a UNIX socket with PROXY v2 to the
application frontend on worker 1."""

import gzip
import http.client
import os
import socket
import ssl

import pytest

from conftest import EXAMPLES, SLOW, addr, curl, free_port, run_crescent, wait_until
from test_tls import Certs


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


# ---------------------------------------------------------------------------
# examples/offload-tls.lua: TLS on worker 2, PROXY v2 with the TLS facts, the application
# frontend on worker 1, nginx behind it.


@pytest.fixture
def tls_chain(crescent, nginx, tmp_path):
    """The offload-tls example in front of the nginx fixture, with a certificate for
    site.test signed by a test CA. Returns (crescent, port, certs, runtime socket)."""
    certs = Certs(tmp_path / "certs").leaf("site", "site.test")
    port = free_port()
    runtime = tmp_path / "runtime.sock"
    env = {
        "CRESCENT_TLS_ADDR": addr(port),
        "APP_SOCK": str(tmp_path / "app.sock"),
        "WEB_ADDR": addr(nginx.port),
        "TLS_CERT": certs.path("site.pem"),
        "RUNTIME_SOCK": str(runtime),
    }
    c = crescent(EXAMPLES / "offload-tls.lua", ports=[port], env=env)
    return c, port, certs, runtime


def https_get(certs, port, path, *args):
    """curl over HTTP/1.1 (ALPN http/1.1) to site.test:port; returns (body, curl's local
    port, response headers as a dict of lowercase names)."""
    r = curl("--cacert", certs.path("ca.crt"), "--resolve", f"site.test:{port}:127.0.0.1",
             "--http1.1", "-D", "-", "-w", "\n%{local_port}", *args,
             f"https://site.test:{port}{path}")
    head, _, rest = r.out.replace("\r\n", "\n").partition("\n\n")
    body, _, local_port = rest.rpartition("\n")
    headers = {}
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return body, int(local_port), headers


@pytest.mark.skipif(os.cpu_count() < 2, reason="the example pins workers to CPUs 0 and 1")
def test_offload_tls_chain_keeps_client_and_tls_facts(tls_chain, nginx):
    c, port, certs, _ = tls_chain
    # The client's address goes through TLS (worker 2), the UNIX socket and the
    # application frontend (worker 1) to nginx: X-Forwarded-For is the client's, which
    # the application frontend only knows from the PROXY header (its peer is a socket file).
    body, local_port, _ = https_get(certs, port, "/xff")
    assert body == "xff=127.0.0.1\n", body
    d = c.wait_http_log(lambda d: d["frontend"] == "app" and d["request"].startswith("GET /xff"))
    assert (d["client"], int(d["client_port"])) == ("127.0.0.1", local_port), d
    assert d["status"] == 200 and d["backend"] == "servers", d
    d = c.wait_http_log(lambda d: d["frontend"] == "tls" and d["request"].startswith("GET /xff"))
    assert (d["client"], int(d["client_port"])) == ("127.0.0.1", local_port), d
    line = wait_until(lambda: next((l for l in nginx.access_lines() if '"GET /xff' in l), None),
                      5 * SLOW, "nginx's access line")
    assert 'xff="127.0.0.1"' in line, line

    # The TLS facts of the listener's handshake, as the application frontend received them
    # in the PROXY v2 TLVs (SSL version and cipher, authority = SNI, ALPN).
    body, local_port, h = https_get(certs, port, "/tls-info")
    assert body == f"client 127.0.0.1:{local_port}\n", body
    assert h["x-tls-version"] == "TLSv1.3", h
    assert h["x-tls-sni"] == "site.test", h
    assert h["x-tls-alpn"] == "http/1.1", h
    # ... the same as the listener logged for that handshake.
    hs = wait_until(lambda: next((l for l in c.stderr().splitlines()
                                  if f"TLS from 127.0.0.1:{local_port}:" in l), None),
                    5 * SLOW, "the listener's handshake line")
    assert 'frontend "tls"' in hs and f"TLSv1.3 {h['x-tls-cipher']}," in hs, (hs, h)
    assert 'sni "site.test", alpn "http/1.1"' in hs, hs
    assert "worker 1 pinned to CPU 0" in c.stderr() and "worker 2 pinned to CPU 1" in c.stderr()


@pytest.mark.skipif(os.cpu_count() < 2, reason="the example pins workers to CPUs 0 and 1")
def test_offload_tls_chain_without_sni_sends_no_authority(tls_chain):
    c, port, certs, _ = tls_chain
    # An IP address in the URL: curl sends no SNI, so the header has no AUTHORITY TLV,
    # while the SSL and ALPN TLVs are still there.
    r = curl("--cacert", certs.path("ca.crt"), "-k", "--http1.1", "-D", "-",
             f"https://127.0.0.1:{port}/tls-info")
    head = r.out.lower()
    assert "x-tls-sni: none" in head, r.out
    assert "x-tls-version: tlsv1.3" in head and "x-tls-alpn: http/1.1" in head, r.out


@pytest.mark.skipif(os.cpu_count() < 2, reason="the example pins workers to CPUs 0 and 1")
def test_offload_tls_chain_runs_on_two_workers(tls_chain, nginx):
    """While one request is in flight, the runtime API's `show sess` lists its two
    sessions: the TLS listener's on worker 2 and the application frontend's on worker 1,
    both with the client's address and port."""
    c, port, certs, runtime = tls_chain
    ctx = ssl.create_default_context(cafile=certs.path("ca.crt"))
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname="site.test") as s:
            local = f"127.0.0.1:{s.getsockname()[1]}"
            # The head only: the body is held back so that the exchange stays open.
            s.sendall(b"PUT /upload/held.txt HTTP/1.1\r\nHost: site.test\r\n"
                      b"Content-Length: 5\r\n\r\n")

            def both():
                r = run_crescent(["ctl", "-s", runtime, "show", "sess"])
                lines = r.stdout.splitlines()
                tls = [l for l in lines if " fe=tls " in l and "proto=http" in l]
                app = [l for l in lines if " fe=app " in l and "proto=http" in l]
                return (tls, app) if tls and app else None

            tls, app = wait_until(both, 10 * SLOW, "both sessions in show sess")
            assert len(tls) == 1 and tls[0].startswith("worker=2 ") and f"src={local} " in tls[0], tls
            assert len(app) == 1 and app[0].startswith("worker=1 ") and f"src={local} " in app[0], app
            s.sendall(b"hello")
            resp = b""
            while b"\r\n\r\n" not in resp:
                chunk = s.recv(4096)
                assert chunk, resp
                resp += chunk
            assert resp.startswith(b"HTTP/1.1 201"), resp
    assert (nginx.root / "upload" / "held.txt").read_bytes() == b"hello"
