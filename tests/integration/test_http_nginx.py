"""HTTP/1.1 through crescent to a real nginx, checked with the real curl: keep-alive on
both sides, X-Forwarded-For, 10 MB down and up (chunked) by checksum, HTTP/1.0,
Expect: 100-continue, and the errors a client sees (503, 504) with their log lines."""

import hashlib
import os
import re
import socket
import time

import pytest

from conftest import SLOW, addr, curl, free_port

CONFIG = """
global {{ threads = 1 }}

defaults {{
  mode = "http",
  timeout = {{ connect = "2s", client = "10s", server = "10s",
              http_request = "5s", http_keep_alive = "5s" }},
  retries = 3,
}}

frontend "public" {{
  bind {{ "{bind}" }},
  forwardfor = true,
  use_backend {{ "empty", when = acl.path_beg("/empty") }},
  use_backend {{ "refused", when = acl.path_beg("/refused") }},
  use_backend {{ "mute", when = acl.path_beg("/mute") }},
  default_backend = "web",
}}

-- Short client-side timeouts: 408 for a slow head, idle keep-alive closed.
frontend "short" {{
  bind {{ "{bind_short}" }},
  timeout = {{ http_request = "1s", http_keep_alive = "1s" }},
  default_backend = "web",
}}

backend "web" {{
  server "nginx" {{ "{nginx}" }},
}}

-- No server at all: 503.
backend "empty" {{
}}

-- Nothing listens there: the connect is refused on every retry, 503 (as HAProxy).
backend "refused" {{
  retries = 1,
  server "gone" {{ "{refused}" }},
}}

-- Accepts (kernel backlog) but never answers: 504 after timeout.server.
backend "mute" {{
  timeout = {{ server = "1s" }},
  server "mute" {{ "{mute}" }},
}}
"""

MB = 1024 * 1024


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def proxy(crescent, nginx, mute_server):
    port, short = free_port(), free_port()
    cfg = CONFIG.format(
        bind=addr(port), bind_short=addr(short), nginx=addr(nginx.port),
        refused=addr(free_port()), mute=addr(mute_server),
    )
    c = crescent(cfg, ports=[port, short])
    c.port, c.short = port, short
    c.url = f"http://{addr(port)}"
    c.nginx = nginx
    return c


def test_get_through_proxy_and_log_line(proxy):
    r = curl("-i", f"{proxy.url}/index.html")
    assert r.out.startswith("HTTP/1.1 200"), r.out
    assert "hello from nginx" in r.out
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /index.html HTTP/1.1")
    assert d["status"] == 200
    assert (d["frontend"], d["backend"], d["server"]) == ("public", "web", "nginx")
    assert d["state"] == "----", d
    assert d["client"] == "127.0.0.1"


def test_client_keep_alive(proxy):
    r = curl("-v", f"{proxy.url}/index.html", f"{proxy.url}/index.html")
    assert r.out.count("hello from nginx") == 2, r.out
    assert "Re-using existing connection" in r.err, r.err


def test_server_connection_reused(proxy):
    """Successive requests reuse the idle server connection (per-thread pool): nginx sees
    one connection, several requests. With http_reuse "safe" (the default) a client
    connection's first request takes a new one: three clients, three connections."""
    r = curl(*[f"{proxy.url}/conn" for _ in range(3)])  # one client connection
    seen = [l.strip() for l in r.out.splitlines() if l.strip()]
    conns = {s.split()[0] for s in seen}
    assert len(conns) == 1, f"nginx saw several connections: {seen}"
    assert seen[-1].endswith("reqs=3"), seen
    firsts = {curl(f"{proxy.url}/conn").out.split()[0] for _ in range(3)}
    assert len(firsts) == 3 and not firsts & conns, firsts


def test_x_forwarded_for(proxy):
    r = curl(f"{proxy.url}/xff")
    assert r.out.strip() == "xff=127.0.0.1", r.out


def test_download_10mb(proxy, tmp_path):
    src = proxy.nginx.root / "big.bin"
    src.write_bytes(os.urandom(10 * MB))
    out = tmp_path / "big.down"
    r = curl("-o", out, "-w", "%{http_code} %{size_download}", f"{proxy.url}/big.bin")
    assert r.out == f"200 {10 * MB}", r.out
    assert sha256_file(out) == sha256_file(src)


def test_upload_10mb_chunked(proxy, tmp_path):
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(10 * MB))
    with open(src, "rb") as f:
        r = subprocess_curl_stdin(
            f,
            "-T", "-", "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
            "-w", "%{http_code}", "-o", os.devnull,
            f"{proxy.url}/upload/up.bin",
        )
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() in ("201", "204"), r.stdout
    dst = proxy.nginx.root / "upload" / "up.bin"
    assert dst.exists()
    assert sha256_file(dst) == sha256_file(src)
    d = proxy.wait_http_log(lambda d: d["request"] == "PUT /upload/up.bin HTTP/1.1")
    assert d["status"] in (201, 204)


def subprocess_curl_stdin(stdin, *args):
    import subprocess

    return subprocess.run(
        ["curl", "-sS", "--max-time", str(50 * SLOW), *map(str, args)],
        stdin=stdin, capture_output=True, timeout=60 * SLOW,
    )


def test_expect_100_continue(proxy, tmp_path):
    src = tmp_path / "c.bin"
    src.write_bytes(os.urandom(2 * MB))
    # A long expect100-timeout: without a 100 Continue, curl would wait 30 s.
    r = curl(
        "-v", "--expect100-timeout", "30", "-H", "Expect: 100-continue",
        "-T", src, "-w", "%{http_code}", "-o", os.devnull,
        f"{proxy.url}/upload/c.bin",
        timeout=25 * SLOW,
    )
    assert re.search(r"^< HTTP/1\.1 100 Continue", r.err, re.M), r.err
    assert r.out in ("201", "204"), r.out
    assert sha256_file(proxy.nginx.root / "upload" / "c.bin") == sha256_file(src)


def test_http_1_0(proxy):
    r = curl("-v", "--http1.0", "-i", f"{proxy.url}/index.html")
    assert re.match(r"^HTTP/1\.[01] 200", r.out), r.out
    assert "hello from nginx" in r.out
    assert "> GET /index.html HTTP/1.0" in r.err
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /index.html HTTP/1.0")
    assert d["status"] == 200


def test_no_server_503(proxy):
    r = curl("-i", f"{proxy.url}/empty/x", check=True)
    assert r.out.startswith("HTTP/1.1 503"), r.out
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /empty/x HTTP/1.1")
    assert d["status"] == 503
    assert (d["backend"], d["server"]) == ("empty", "<NOSRV>"), d
    assert d["state"].startswith("SC"), d


def test_refused_503(proxy):
    r = curl("-i", f"{proxy.url}/refused/x")
    assert r.out.startswith("HTTP/1.1 503"), r.out
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /refused/x HTTP/1.1")
    assert d["status"] == 503
    assert (d["backend"], d["server"]) == ("refused", "gone"), d
    assert d["state"] == "SC--", d
    assert int(d["retries"].lstrip("+")) >= 1, d


def test_server_timeout_504(proxy):
    r = curl("-i", "-w", "\n%{time_total}", f"{proxy.url}/mute/x")
    assert r.out.startswith("HTTP/1.1 504"), r.out
    elapsed = float(r.out.rsplit("\n", 1)[1])
    assert 0.8 <= elapsed <= 5 * SLOW, f"504 after {elapsed}s, timeout.server is 1s"
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /mute/x HTTP/1.1")
    assert d["status"] == 504
    assert d["state"] == "sH--", d


def test_still_serving_after_errors(proxy):
    for path in ("/empty/", "/refused/", "/mute/"):
        curl(f"{proxy.url}{path}")
    r = curl("-i", f"{proxy.url}/index.html")
    assert r.out.startswith("HTTP/1.1 200"), r.out


def read_until_closed(s, timeout):
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return data, "closed"
            data += b
    except ConnectionResetError:
        return data, "reset"
    except socket.timeout:
        return data, "timeout"


def test_slow_request_head_408(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.short), timeout=5)
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")  # and never the empty line
    t0 = time.monotonic()
    data, ended = read_until_closed(s, 10 * SLOW)
    elapsed = time.monotonic() - t0
    s.close()
    assert data.startswith(b"HTTP/1.1 408"), (data, ended)
    assert ended in ("closed", "reset")
    assert 0.8 <= elapsed <= 3 * SLOW, f"408 after {elapsed:.2f}s, http_request is 1s"
    d = proxy.wait_http_log(lambda d: d["frontend"] == "short" and d["status"] == 408)
    assert d["state"].startswith("cR"), d


def test_idle_keep_alive_closed(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.short), timeout=5)
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    t0 = time.monotonic()
    data, ended = read_until_closed(s, 10 * SLOW)
    elapsed = time.monotonic() - t0
    s.close()
    assert data.startswith(b"HTTP/1.1 200") and b"hello from nginx" in data, data
    assert ended == "closed", ended
    assert 0.8 <= elapsed <= 3 * SLOW, f"idle connection closed after {elapsed:.2f}s (1s)"
    # An idle keep-alive connection closing is not an error: no 408 logged for it.
    time.sleep(0.2)
    assert not [d for d in proxy.http_logs() if d["status"] == 408], proxy.stdout()
