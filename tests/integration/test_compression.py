"""Response compression end to end: crescent with `compression = {...}` in front of a
real nginx (gzip off) serving a 5 MB text file and small files, checked with the real
curl and with raw sockets. What is compressed (gzip or deflate as the client asks, with
Vary, a weak ETag, chunked for HTTP/1.1 and close-delimited for HTTP/1.0, whatever the
server's framing: Content-Length, chunked, until close) and what is not (no
Accept-Encoding, excluded types, ranges, small files, HEAD, no-transform)."""

import gzip
import hashlib
import random
import re
import signal
import socket
import zlib
from pathlib import Path

import pytest

from conftest import (
    NGINX_HEAD,
    SLOW,
    Process,
    addr,
    curl,
    free_port,
    read_response,
    recv_all,
    request_line,
)

NGINX_CONF = NGINX_HEAD + """
    access_log {prefix}/access.log;
    types {{
        text/html html;
        text/plain txt;
        application/json json;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    gzip off;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/html;
        # SSI output has no known length: nginx sends it chunked to HTTP/1.1 clients.
        location /ssi/ {{ ssi on; }}
        location /nt/ {{ add_header Cache-Control "public, no-transform"; }}
    }}
}}
"""

CONFIG = """
global {{ threads = 1 }}
defaults {{
  mode = "http",
  timeout = {{ connect = "2s", client = "20s", server = "20s", http_request = "5s" }},
}}

listen "gz" {{
  bind {{ "{bind}" }},
  compression = {{ algo = {{ "gzip", "deflate" }}, min_size = "1k", level = 6 }},
  server "nginx" {{ "{nginx}" }},
}}

-- Compression on the backend only: the frontend has none.
frontend "plain" {{
  bind {{ "{bind_plain}" }},
  use_backend {{ "scripted", when = acl.path_beg("/scripted") }},
  default_backend = "web_deflate",
}}
backend "web_deflate" {{
  compression = {{ algo = {{ "deflate", "gzip" }}, types = {{ "text/plain", "text/html" }} }},
  server "nginx" {{ "{nginx}" }},
}}
backend "scripted" {{
  compression = {{ min_size = 0 }},
  server "app" {{ "{scripted}" }},
}}
"""

MB = 1024 * 1024
WORDS = ["proxy", "crescent", "server", "backend", "frontend", "gzip", "deflate", "lorem",
         "ipsum", "dolor", "<p>", "</p>", "\n"]


def make_text(size, seed):
    rnd = random.Random(seed)
    parts, n = [], 0
    while n < size:
        w = rnd.choice(WORDS) + (str(rnd.randrange(10**6)) if rnd.random() < 0.2 else "") + " "
        parts.append(w)
        n += len(w)
    return "".join(parts).encode()[:size]


BIG = make_text(5 * MB, 1)
SMALL = b"tiny file, under min_size\n"
HTML = make_text(20000, 2)
BIN = make_text(100000, 3)  # compressible, but served as application/octet-stream
SSI_PAGE = b"<html><body>\n" + make_text(30000, 4) + b"\n</body></html>\n"
SCRIPTED = make_text(300000, 5)


def sha(b):
    return hashlib.sha256(b).hexdigest()


class Nginx(Process):
    def __init__(self, workdir, port):
        self.prefix = Path(workdir)
        self.port = port
        html = self.prefix / "html"
        for d in ("html/ssi", "html/nt", "tmp"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        (html / "big.txt").write_bytes(BIG)
        (html / "small.txt").write_bytes(SMALL)
        (html / "page.html").write_bytes(HTML)
        (html / "data.bin").write_bytes(BIN)
        (html / "ssi" / "page.html").write_bytes(SSI_PAGE)
        (html / "nt" / "page.html").write_bytes(HTML)
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=self.prefix, port=port))
        super().__init__(
            "nginx",
            ["/usr/sbin/nginx", "-p", self.prefix, "-c", conf, "-e", self.prefix / "error.log"],
            self.prefix,
        )


@pytest.fixture
def nginx_text(tmp_path):
    n = Nginx(tmp_path / "nginx", free_port())
    try:
        n.wait_ready([n.port])
        yield n
    finally:
        n.stop(signal.SIGQUIT)


def scripted_app(conn):
    """/scripted/close: a body delimited by close; /scripted/chunked: chunked with a trailer,
    in uneven pieces; both text/plain, without Content-Length."""
    line = request_line(conn)
    if line is None:
        return
    path = line.split()[1]
    if path == "/scripted/close":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        for i in range(0, len(SCRIPTED), 7000):
            conn.sendall(SCRIPTED[i:i + 7000])
    elif path == "/scripted/chunked":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        i, step = 0, 1
        while i < len(SCRIPTED):
            piece = SCRIPTED[i:i + step]
            conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            i += len(piece)
            step = step * 3 % 20011 + 1
        conn.sendall(b"0\r\nX-Sum: 1\r\n\r\n")
        request_line(conn)  # keep the connection until the proxy closes it


@pytest.fixture
def proxy(crescent, nginx_text, tcp_server):
    scripted = tcp_server(scripted_app)
    port, plain = free_port(), free_port()
    cfg = CONFIG.format(bind=addr(port), bind_plain=addr(plain), nginx=addr(nginx_text.port),
                        scripted=addr(scripted.port))
    c = crescent(cfg, ports=[port, plain])
    c.url = f"http://{addr(port)}"
    c.plain = f"http://{addr(plain)}"
    c.port, c.plain_port = port, plain
    return c


def headers_of(text):
    """Lower-cased name -> list of values, of the last response head in curl's -D output."""
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.startswith("HTTP/")]
    lines = blocks[-1].split("\n")
    h = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            h.setdefault(k.strip().lower(), []).append(v.strip())
    h[":status"] = int(lines[0].split()[1])
    return h


def fetch(url, *args, tmp_path, name="out"):
    """curl -D headers -o body: returns (headers dict, body bytes)."""
    hdr, body = tmp_path / f"{name}.hdr", tmp_path / f"{name}.body"
    curl("-D", hdr, "-o", body, *args, url)
    return headers_of(hdr.read_text()), body.read_bytes()


def assert_vary(h):
    values = ",".join(h.get("vary", []))
    assert re.search(r"(^|,)\s*accept-encoding\s*(,|$)", values, re.I), h


def test_big_text_gzip_with_curl_compressed(proxy, tmp_path):
    h, body = fetch(f"{proxy.url}/big.txt", "--compressed", tmp_path=tmp_path)
    assert h[":status"] == 200
    assert h["content-encoding"] == ["gzip"], h
    assert h["transfer-encoding"] == ["chunked"], h
    assert "content-length" not in h and "accept-ranges" not in h, h
    assert_vary(h)
    assert h["etag"][0].startswith('W/"'), h
    assert sha(body) == sha(BIG)
    proxy.wait_http_log(lambda d: d["request"] == "GET /big.txt HTTP/1.1" and d["status"] == 200)


def test_gzip_bytes_on_the_wire(proxy, tmp_path):
    h, raw = fetch(f"{proxy.url}/big.txt", "-H", "Accept-Encoding: gzip", tmp_path=tmp_path)
    assert h["content-encoding"] == ["gzip"], h
    assert raw[:2] == b"\x1f\x8b"
    assert len(raw) < len(BIG) // 2
    assert sha(gzip.decompress(raw)) == sha(BIG)
    # The traffic log counts what the client received: the compressed bytes.
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /big.txt HTTP/1.1")
    assert int(d["bytes"]) < len(BIG) // 2


def test_without_accept_encoding_not_compressed(proxy, tmp_path):
    h, body = fetch(f"{proxy.url}/big.txt", tmp_path=tmp_path)
    assert "content-encoding" not in h, h
    assert h["content-length"] == [str(len(BIG))], h
    assert h["etag"][0].startswith('"'), h  # untouched
    assert_vary(h)  # another client would get it compressed
    assert sha(body) == sha(BIG)


def test_excluded_type_not_compressed(proxy, tmp_path):
    h, body = fetch(f"{proxy.url}/data.bin", "-H", "Accept-Encoding: gzip", tmp_path=tmp_path)
    assert h["content-type"] == ["application/octet-stream"], h
    assert "content-encoding" not in h and "vary" not in h, h
    assert h["content-length"] == [str(len(BIN))], h
    assert body == BIN


def test_range_request_not_compressed(proxy, tmp_path):
    h, body = fetch(f"{proxy.url}/big.txt", "-H", "Accept-Encoding: gzip", "-r", "100-199",
                    tmp_path=tmp_path)
    assert h[":status"] == 206, h
    assert "content-encoding" not in h, h
    assert h["content-range"] == [f"bytes 100-199/{len(BIG)}"], h
    assert body == BIG[100:200]


def test_small_file_not_compressed(proxy, tmp_path):
    h, body = fetch(f"{proxy.url}/small.txt", "-H", "Accept-Encoding: gzip", tmp_path=tmp_path)
    assert "content-encoding" not in h, h
    assert h["content-length"] == [str(len(SMALL))], h
    assert body == SMALL


def test_head_request_not_compressed(proxy, tmp_path):
    r = curl("-sI", "-H", "Accept-Encoding: gzip", f"{proxy.url}/big.txt")
    h = headers_of(r.out)
    assert h[":status"] == 200
    assert "content-encoding" not in h, h
    assert h["content-length"] == [str(len(BIG))], h


def test_no_transform_not_compressed(proxy, tmp_path):
    h, body = fetch(f"{proxy.url}/nt/page.html", "-H", "Accept-Encoding: gzip",
                    tmp_path=tmp_path)
    assert "no-transform" in ",".join(h["cache-control"]), h
    assert "content-encoding" not in h, h
    assert body == HTML


def test_deflate_when_asked_only_for_deflate(proxy, tmp_path):
    h, raw = fetch(f"{proxy.url}/page.html", "-H", "Accept-Encoding: deflate",
                   tmp_path=tmp_path)
    assert h["content-encoding"] == ["deflate"], h
    assert_vary(h)
    assert zlib.decompress(raw) == HTML  # the zlib format (RFC 9110 §8.4.1.2)
    # q-values: gzip not acceptable, deflate is.
    h, raw = fetch(f"{proxy.url}/page.html", "-H", "Accept-Encoding: gzip;q=0, deflate;q=0.5",
                   tmp_path=tmp_path, name="q")
    assert h["content-encoding"] == ["deflate"], h
    assert zlib.decompress(raw) == HTML
    # Nothing acceptable: identity.
    h, raw = fetch(f"{proxy.url}/page.html", "-H", "Accept-Encoding: br, *;q=0",
                   tmp_path=tmp_path, name="none")
    assert "content-encoding" not in h, h
    assert raw == HTML


def test_backend_compression_settings(proxy, tmp_path):
    # "plain" has no compression; its backend does, preferring deflate.
    h, raw = fetch(f"{proxy.plain}/page.html", "-H", "Accept-Encoding: gzip, deflate",
                   tmp_path=tmp_path)
    assert h["content-encoding"] == ["deflate"], h
    assert zlib.decompress(raw) == HTML


def test_chunked_upstream_compressed(proxy, tmp_path):
    h, body = fetch(f"{proxy.url}/ssi/page.html", tmp_path=tmp_path, name="plain")
    assert h["transfer-encoding"] == ["chunked"], h  # nginx sends this one chunked
    assert body == SSI_PAGE
    h, body = fetch(f"{proxy.url}/ssi/page.html", "--compressed", tmp_path=tmp_path)
    assert h["content-encoding"] == ["gzip"], h
    assert h["transfer-encoding"] == ["chunked"], h
    assert body == SSI_PAGE


@pytest.mark.parametrize("path", ["/scripted/chunked", "/scripted/close"])
def test_scripted_framings_compressed(proxy, tmp_path, path):
    h, raw = fetch(f"{proxy.plain}{path}", "-H", "Accept-Encoding: gzip", tmp_path=tmp_path)
    assert h["content-encoding"] == ["gzip"], h
    assert h["transfer-encoding"] == ["chunked"], h
    assert sha(gzip.decompress(raw)) == sha(SCRIPTED)


def test_keep_alive_across_compressed_responses(proxy, tmp_path):
    out = [tmp_path / f"o{i}" for i in range(3)]
    r = curl("-v", "--compressed", f"{proxy.url}/page.html", "-o", out[0],
             f"{proxy.url}/big.txt", "-o", out[1], f"{proxy.url}/small.txt", "-o", out[2])
    assert r.err.count("Re-using existing connection") + r.err.count("Reusing existing") >= 2, r.err
    assert out[0].read_bytes() == HTML
    assert sha(out[1].read_bytes()) == sha(BIG)
    assert out[2].read_bytes() == SMALL


def test_http10_client_gets_close_delimited_body(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10 * SLOW) as s:
        s.sendall(b"GET /big.txt HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
        data = recv_all(s, timeout=30 * SLOW)  # the proxy closes after the body
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), lines
    h = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        h[k.strip().lower()] = v.strip().lower()
    assert h.get("content-encoding") == "gzip", h
    assert "content-length" not in h and "transfer-encoding" not in h, h
    assert h.get("connection") == "close", h
    assert sha(gzip.decompress(body)) == sha(BIG)


def test_http10_client_chunked_upstream(proxy):
    with socket.create_connection(("127.0.0.1", proxy.plain_port), timeout=10 * SLOW) as s:
        s.sendall(b"GET /scripted/chunked HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
        data = recv_all(s, timeout=30 * SLOW)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower(), head
    assert b"transfer-encoding" not in head.lower(), head
    assert gzip.decompress(body) == SCRIPTED


SERVICE_CONFIG = """
listen "svc" {{
  bind {{ "{bind}" }},
  compression = {{ algo = {{ "gzip" }}, min_size = 100 }},
  service = function(applet)
    local n = tonumber(applet.path:match("/(%d+)$")) or 0
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:add_header("etag", '"v1"')
    applet:start_response()
    applet:send(string.rep("line of text from a Lua service\\n", n))
  end,
}}
"""


def test_lua_service_response_compressed(crescent, tmp_path):
    """A Lua service's response follows the same rules as a server's: gzip for a client
    that asks (Vary, weak ETag, a Content-Length of the coded size, the connection kept),
    not for one that does not (Vary still), nor below min_size."""
    port = free_port()
    cfg = tmp_path / "svc.lua"
    cfg.write_text(SERVICE_CONFIG.format(bind=addr(port)))
    crescent(cfg, ports=[port])
    expected = b"line of text from a Lua service\n" * 5000

    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        for _ in range(2):  # twice on one connection: the first kept it open
            s.sendall(b"GET /5000 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
            status, h, body = read_response(s)
            assert status == 200, h
            assert h.get("content-encoding") == "gzip", h
            assert "accept-encoding" in h.get("vary", "").lower(), h
            assert h.get("etag", "").lower() == 'w/"v1"', h
            assert "transfer-encoding" not in h, h
            assert gzip.decompress(body) == expected
            assert len(body) < len(expected) // 10

    r = curl("-si", f"http://{addr(port)}/5000")
    head, _, body = r.out.partition("\r\n\r\n")
    assert "content-encoding" not in head.lower(), head
    assert "vary: accept-encoding" in head.lower(), head
    assert body.encode() == expected

    r = curl("-si", "-H", "Accept-Encoding: gzip", f"http://{addr(port)}/2")
    assert "content-encoding" not in r.out.lower(), r.out  # 64 bytes < min_size


