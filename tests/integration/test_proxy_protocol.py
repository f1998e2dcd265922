"""PROXY protocol v1/v2 with real peers (Debian's HAProxy and nginx), malformed headers,
and chains over UNIX sockets.

The original client always connects from 127.0.0.5, so that its address can be told
apart from the proxies' own (127.0.0.1) in every log and header; the tests of TLS facts
sent on (PP2_TYPE_SSL, AUTHORITY, ALPN) connect from 127.0.0.1 and tell the client apart
by its port."""

import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import NGINX_HEAD, SLOW, Process, addr, curl, free_port, wait_until
from test_tls import Certs

CLIENT_IP = "127.0.0.5"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


class EchoServer:
    """HTTP server answering with the X-Forwarded-For it received and its peer address."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                body = (f"xff={self.headers.get('x-forwarded-for', '-')} "
                        f"peer={self.client_address[0]}").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echo():
    s = EchoServer()
    yield s
    s.close()


def http_get(port, path="/", host="127.0.0.1", source=CLIENT_IP, raw_prefix=b"", timeout=10):
    """One HTTP/1.1 request with Connection: close from `source`; returns the response."""
    with socket.create_connection((host, port), timeout=timeout * SLOW,
                                  source_address=(source, 0)) as s:
        s.sendall(raw_prefix + f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def wait_ready_log(c):
    """For binds that need a PROXY header (a bare connect probe would be refused)."""
    wait_until(lambda: "ready:" in c.stderr(), 15 * SLOW, "crescent's ready line")


def body_of(resp):
    return resp.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in resp else ""


class HAProxy(Process):
    def __init__(self, workdir, cfg, name="haproxy"):
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"{name}.cfg"
        path.write_text(cfg)
        super().__init__(name, ["haproxy", "-db", "-f", str(path)], workdir)


def haproxy_cfg(body):
    return f"""
global
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  timeout connect 5s
  timeout client 30s
  timeout server 30s
{body}
"""


def crescent_cfg(body, threads=1):
    return f"""
global {{ threads = {threads} }}
defaults {{ mode = "http", forwardfor = true,
            timeout = {{ connect = "2s", client = "10s", server = "10s", handshake = "2s" }} }}
{body}
"""


@pytest.fixture
def haproxy(tmp_path):
    started = []

    def start(cfg, ports):
        h = HAProxy(tmp_path / f"haproxy{len(started)}", haproxy_cfg(cfg), f"haproxy{len(started)}")
        started.append(h)
        h.wait_ready(ports)
        return h

    yield start
    for h in started:
        h.stop()


# ---------------------------------------------------------------------------
# HAProxy in front of crescent's accept_proxy


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_haproxy_send_proxy_to_crescent(crescent, haproxy, echo, send):
    c_port, h_port = free_port(), free_port()
    c = crescent(crescent_cfg(f"""
frontend "app" {{
  bind {{ "127.0.0.1:{c_port}", accept_proxy = true }},
  default_backend = "b",
}}
backend "b" {{ server "echo" {{ "{addr(echo.port)}" }} }}
"""), ports=[])
    wait_ready_log(c)
    haproxy(f"""
frontend fe
  bind 127.0.0.1:{h_port}
  default_backend be
backend be
  server crescent 127.0.0.1:{c_port} {send}
""", ports=[h_port])
    resp = http_get(h_port, "/who")
    assert " 200 " in resp.split("\r\n")[0], resp
    # crescent forwards the original client in X-Forwarded-For and logs it.
    assert body_of(resp).startswith(f"xff={CLIENT_IP} "), resp
    d = c.wait_http_log(lambda d: d["request"].startswith("GET /who"))
    assert d["client"] == CLIENT_IP, d


# ---------------------------------------------------------------------------
# crescent's send_proxy in front of HAProxy's accept-proxy and nginx's proxy_protocol


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_crescent_send_proxy_to_haproxy(crescent, haproxy, echo, version):
    c_port, h_port = free_port(), free_port()
    h = haproxy(f"""
frontend fe
  bind 127.0.0.1:{h_port} accept-proxy
  default_backend be
backend be
  server echo 127.0.0.1:{echo.port}
""", ports=[])
    wait_until(lambda: _connectable(h_port), 10 * SLOW, "HAProxy listening")
    crescent(crescent_cfg(f"""
frontend "public" {{ bind {{ "127.0.0.1:{c_port}" }}, default_backend = "hap" }}
backend "hap" {{ server "haproxy" {{ "127.0.0.1:{h_port}", send_proxy = "{version}" }} }}
"""), ports=[c_port])
    resp = http_get(c_port, "/via-haproxy")
    assert " 200 " in resp.split("\r\n")[0], resp
    # HAProxy's own log names the original client, which only the PROXY header told it.
    wait_until(lambda: f"{CLIENT_IP}:" in h.stdout() and "/via-haproxy" in h.stdout(),
               10 * SLOW, "HAProxy's log line")
    line = [l for l in h.stdout().splitlines() if "/via-haproxy" in l][0]
    assert line.startswith(f"{CLIENT_IP}:"), line


NGINX_PP_CONF = NGINX_HEAD + """
    access_log {prefix}/access.log;
    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        location / {{
            default_type text/plain;
            return 200 "pp=$proxy_protocol_addr:$proxy_protocol_port remote=$remote_addr";
        }}
    }}
}}
"""


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_crescent_send_proxy_to_nginx(crescent, tmp_path, version):
    n_port, c_port = free_port(), free_port()
    prefix = tmp_path / "nginx-pp"
    (prefix / "tmp").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_PP_CONF.format(prefix=prefix, port=n_port))
    n = Process("nginx-pp", ["/usr/sbin/nginx", "-p", str(prefix), "-c", str(conf), "-e",
                             str(prefix / "error.log")], tmp_path)
    try:
        n.wait_ready([])
        wait_until(lambda: _connectable(n_port), 10 * SLOW, "nginx listening")
        crescent(crescent_cfg(f"""
frontend "public" {{ bind {{ "127.0.0.1:{c_port}" }}, default_backend = "ng" }}
backend "ng" {{ server "nginx" {{ "127.0.0.1:{n_port}", send_proxy = "{version}" }} }}
"""), ports=[c_port])
        resp = http_get(c_port, "/")
        assert body_of(resp).startswith(f"pp={CLIENT_IP}:"), resp
        assert "remote=127.0.0.1" in resp  # the TCP peer was crescent
    finally:
        n.stop()


def _connectable(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Headers written by hand: shapes, splits, refusals


def v2_header(src="10.1.2.3", dst="10.9.9.9", sport=4321, dport=443, tlvs=b"", crc=False,
              command=0x21, family=0x11):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body = addrs + tlvs
    if crc:
        body += b"\x03\x00\x04\x00\x00\x00\x00"
    hdr = V2_SIG + bytes([command, family]) + struct.pack("!H", len(body)) + body
    if crc:
        value = _crc32c(hdr)
        hdr = hdr[:-4] + struct.pack("!I", value)
    return hdr


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.fixture
def pp_crescent(crescent, echo):
    port = free_port()
    c = crescent(crescent_cfg(f"""
frontend "app" {{
  bind {{ "127.0.0.1:{port}", accept_proxy = true }},
  http_request = function(txn)
    if txn.req.path == "/proxy" then
      local p = txn.proxy
      if not p then return txn:reply(200, "none") end
      return txn:reply(200, string.format("v%d %s %s %s auth=%s tlv2=%s", p.version, p.command,
        tostring(p.src), tostring(p.src_port), tostring(p.authority), tostring(p.tlv[0x02])))
    end
  end,
  default_backend = "b",
}}
backend "b" {{ server "echo" {{ "{addr(echo.port)}" }} }}
"""), ports=[])
    wait_ready_log(c)
    c.port = port
    return c


def test_v1_and_v2_headers_set_the_client(pp_crescent):
    port = pp_crescent.port
    r = http_get(port, "/proxy", raw_prefix=b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 80\r\n")
    assert body_of(r) == "v1 PROXY 192.0.2.7 5555 auth=nil tlv2=nil", r
    tlv = b"\x02" + struct.pack("!H", 11) + b"example.org"
    r = http_get(port, "/proxy", raw_prefix=v2_header(tlvs=tlv, crc=True))
    assert body_of(r) == "v2 PROXY 10.1.2.3 4321 auth=example.org tlv2=example.org", r
    # The address from the header is the client for X-Forwarded-For too.
    r = http_get(port, "/xff", raw_prefix=b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
    assert body_of(r).startswith("xff=2001:db8::1 "), r


def test_local_and_unknown_use_the_real_peer(pp_crescent):
    port = pp_crescent.port
    local = V2_SIG + bytes([0x20, 0x00]) + b"\x00\x00"
    r = http_get(port, "/xff", raw_prefix=local)
    assert body_of(r).startswith(f"xff={CLIENT_IP} "), r
    r = http_get(port, "/xff", raw_prefix=b"PROXY UNKNOWN\r\n")
    assert body_of(r).startswith(f"xff={CLIENT_IP} "), r


def test_header_one_byte_at_a_time(pp_crescent):
    port = pp_crescent.port
    data = v2_header(crc=True) + b"GET /proxy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in data[:40]:
            s.sendall(bytes([b]))
            time.sleep(0.002)  # pacing: separate segments, so separate reads
        s.sendall(data[40:])
        resp = b""
        while chunk := s.recv(4096):
            resp += chunk
    assert body_of(resp.decode()).startswith("v2 PROXY 10.1.2.3 4321"), resp


BAD_HEADERS = {
    "not a header": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a PROXY protocol header"),
    "v1 double space": (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1"),
    "v1 bad address": (b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", "PROXY v1"),
    "v1 too long": (b"PROXY UNKNOWN " + b"x" * 120, "PROXY v1"),
    "v2 version 1": (V2_SIG + b"\x11\x11\x00\x0c" + b"\x00" * 12, "PROXY v2"),
    "v2 crc mismatch": (v2_header(crc=True)[:-1] + b"\x00", "PROXY v2"),
    "v2 oversized": (V2_SIG + b"\x21\x11\xff\xff", "PROXY v2"),
    "v2 short block": (V2_SIG + b"\x21\x11\x00\x04" + b"\x00" * 4, "PROXY v2"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_headers_close_and_log(pp_crescent, case):
    data, reason = BAD_HEADERS[case]
    port = pp_crescent.port
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.sendall(data)
        try:
            got = s.recv(4096)
        except ConnectionResetError:
            got = b""
    assert got == b"", got  # closed, nothing answered
    wait_until(lambda: reason in pp_crescent.stderr(), 5 * SLOW, f"the log of {case}")
    assert "connection closed" in pp_crescent.stderr()
    # The process is unharmed.
    r = http_get(port, "/proxy", raw_prefix=b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 80\r\n")
    assert body_of(r).startswith("v1 PROXY 192.0.2.7"), r


def test_truncated_header_times_out(pp_crescent):
    port = pp_crescent.port
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.sendall(v2_header()[:20])
        t0 = time.monotonic()
        assert s.recv(10) == b""  # closed after the handshake timeout (2 s)
        assert time.monotonic() - t0 >= 1.5
    assert "timeout in the middle of the PROXY header" in pp_crescent.stderr()


# ---------------------------------------------------------------------------
# Chains over UNIX sockets, TCP mode


def test_tcp_chain_over_unix_socket_keeps_client(crescent, tcp_server, tmp_path):
    """client -> frontend (TCP) -> unix socket with PROXY v2 -> frontend accept_proxy (TCP)
    -> a server that echoes; the second frontend's log shows the original client."""
    sock = tmp_path / "app.sock"

    def echo_handler(conn):
        while data := conn.recv(65536):
            conn.sendall(data)

    srv = tcp_server(echo_handler)
    port = free_port()
    c = crescent(f"""
global {{ threads = 2 }}
defaults {{ mode = "tcp", timeout = {{ connect = "2s", client = "10s", server = "10s" }} }}
listen "edge" {{
  bind {{ "127.0.0.1:{port}", threads = {{ 2 }} }},
  server "app" {{ "unix:{sock}", send_proxy = "v2", proxy_v2_options = {{ "crc32c" }} }},
}}
frontend "app" {{
  bind {{ "unix:{sock}", accept_proxy = true, mode = "0600", threads = {{ 1 }} }},
  default_backend = "echo",
}}
backend "echo" {{ server "e" {{ "{addr(srv.port)}" }} }}
""", ports=[port])
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW,
                                  source_address=(CLIENT_IP, 0)) as s:
        payload = b"x" * 200000
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got == payload
    d = c.wait_tcp_log(lambda d: d["frontend"] == "app")
    assert d["client"] == CLIENT_IP, d
    assert oct(sock.stat().st_mode & 0o777) == "0o600"


def test_http_chain_over_abstract_unix_name(crescent, echo):
    """An abstract UNIX name (unix:@name) as bind and as server, PROXY v1 between."""
    port = free_port()
    name = f"crescent-test-{port}"
    c = crescent(crescent_cfg(f"""
frontend "edge" {{ bind {{ "127.0.0.1:{port}" }}, default_backend = "inner" }}
backend "inner" {{ server "app" {{ "unix:@{name}", send_proxy = "v1" }} }}
frontend "app" {{ bind {{ "unix:@{name}", accept_proxy = true }}, default_backend = "b" }}
backend "b" {{ server "echo" {{ "{addr(echo.port)}" }} }}
"""), ports=[port])
    r = http_get(port, "/abstract")
    assert body_of(r).startswith(f"xff={CLIENT_IP}"), r
    d = c.wait_http_log(lambda d: d["frontend"] == "app")
    assert d["client"] == CLIENT_IP, d


def test_health_checks_send_local_header(crescent, echo, tmp_path):
    """A checked server with send_proxy gets a LOCAL header before each check: the
    check request reaches the accept_proxy frontend (and passes) instead of being
    refused as a connection without a header."""
    port = free_port()
    sock = tmp_path / "checked.sock"
    c = crescent(crescent_cfg(f"""
frontend "edge" {{ bind {{ "127.0.0.1:{port}" }}, default_backend = "inner" }}
backend "inner" {{
  check = {{ http = "GET /health", inter = "100ms", rise = 1, fall = 1 }},
  server "app" {{ "unix:{sock}", send_proxy = "v2", check = true }},
}}
frontend "app" {{ bind {{ "unix:{sock}", accept_proxy = true }}, default_backend = "b" }}
backend "b" {{ server "echo" {{ "{addr(echo.port)}" }} }}
"""), ports=[port])
    c.wait_http_log(lambda d: d["frontend"] == "app" and d["request"].startswith("GET /health"),
                    what="a health check through the PROXY frontend")
    assert "PROXY" not in c.stderr(), c.stderr()  # no header refused
    assert "is DOWN" not in c.stderr()
    assert body_of(http_get(port, "/after")).startswith(f"xff={CLIENT_IP}")


# ---------------------------------------------------------------------------
# TLS terminated by crescent: its facts in the PROXY v2 header sent to the next hop


def read_v2_header(conn):
    """Reads one PROXY v2 header from `conn` and decodes it after the specification
    (haproxy's doc/proxy-protocol.txt §2.2), independently of crescent's codec: returns
    {src, dst, sport, dport, tlvs: {type: value}, ssl: {client, verify, subs}, crc_ok}."""

    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, f"EOF after {len(data)} of {n} header bytes"
            data += chunk
        return data

    fixed = exactly(16)
    assert fixed[:12] == V2_SIG and fixed[12] == 0x21 and fixed[13] == 0x11, fixed
    rest = exactly(struct.unpack("!H", fixed[14:16])[0])
    out = {"src": socket.inet_ntoa(rest[0:4]), "dst": socket.inet_ntoa(rest[4:8])}
    out["sport"], out["dport"] = struct.unpack("!HH", rest[8:12])
    tlvs, crc_at, i = {}, None, 12
    while i < len(rest):
        t, n = rest[i], struct.unpack("!H", rest[i + 1:i + 3])[0]
        assert i + 3 + n <= len(rest), "TLV beyond the header"
        tlvs[t] = rest[i + 3:i + 3 + n]
        if t == 0x03:
            crc_at = 16 + i + 3
        i += 3 + n
    out["tlvs"] = tlvs
    if crc_at is not None:
        whole = fixed + rest
        zeroed = whole[:crc_at] + b"\0\0\0\0" + whole[crc_at + 4:]
        out["crc_ok"] = struct.unpack("!I", whole[crc_at:crc_at + 4])[0] == _crc32c(zeroed)
    if 0x20 in tlvs:
        v = tlvs[0x20]
        subs, j = {}, 5
        while j < len(v):
            t, n = v[j], struct.unpack("!H", v[j + 1:j + 3])[0]
            subs[t] = v[j + 3:j + 3 + n].decode()
            j += 3 + n
        out["ssl"] = {"client": v[0], "verify": struct.unpack("!I", v[1:5])[0], "subs": subs}
    return out


def test_tcp_mode_tls_bind_sends_tls_facts_in_v2_tlvs(crescent, tcp_server, tmp_path):
    """A TCP-mode TLS bind whose server gets PROXY v2 with proxy_v2_options = { "ssl",
    "authority", "alpn", "crc32c" }: the header carries the client's address, the SNI it
    sent, the ALPN protocol agreed, PP2_TYPE_SSL (client = PP2_CLIENT_SSL, verify 0, the
    version and cipher the client negotiated) and a valid CRC32C."""
    certs = Certs(tmp_path / "certs").leaf("site", "site.test")
    seen = []

    def handler(conn):
        seen.append(read_v2_header(conn))
        conn.sendall(b"header read\n")

    srv = tcp_server(handler)
    port = free_port()
    crescent(f"""
global {{ threads = 1 }}
defaults {{ mode = "tcp", timeout = {{ connect = "2s", client = "10s", server = "10s" }} }}
listen "tls" {{
  bind {{ "127.0.0.1:{port}", tls = {{ cert = "{certs.path('site.pem')}", alpn = {{ "http/1.1" }} }} }},
  server "s" {{ "{addr(srv.port)}", send_proxy = "v2",
               proxy_v2_options = {{ "ssl", "authority", "alpn", "crc32c" }} }},
}}
""", ports=[port])
    ctx = ssl.create_default_context(cafile=certs.path("ca.crt"))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname="site.test") as s:
            local_port = s.getsockname()[1]
            version, cipher = s.version(), s.cipher()[0]
            assert s.selected_alpn_protocol() == "http/1.1"
            got = b""
            while b"\n" not in got:
                chunk = s.recv(100)
                assert chunk, got
                got += chunk
    assert got == b"header read\n", (got, srv.errors)
    h = seen[0]
    assert (h["src"], h["sport"], h["dst"], h["dport"]) == ("127.0.0.1", local_port,
                                                            "127.0.0.1", port), h
    assert set(h["tlvs"]) == {0x01, 0x02, 0x03, 0x20}, h
    assert h["tlvs"][0x02] == b"site.test" and h["tlvs"][0x01] == b"http/1.1", h
    assert h["crc_ok"], h
    assert h["ssl"] == {"client": 0x01, "verify": 0, "subs": {0x21: version, 0x23: cipher}}, h


def test_tls_authority_reaches_haproxy(crescent, haproxy, tmp_path):
    """HAProxy (accept-proxy) reads the authority TLV crescent fills from the SNI of the
    TLS it terminated (fc_pp_authority), and the client's address."""
    certs = Certs(tmp_path / "certs").leaf("site", "site.test")
    c_port, h_port = free_port(), free_port()
    haproxy(f"""
frontend fe
  bind 127.0.0.1:{h_port} accept-proxy
  http-request return status 200 content-type text/plain lf-string "authority=%[fc_pp_authority] client=%[src]:%[src_port]"
""", ports=[])
    wait_until(lambda: _connectable(h_port), 10 * SLOW, "HAProxy listening")
    crescent(crescent_cfg(f"""
frontend "public" {{
  bind {{ "127.0.0.1:{c_port}", tls = {{ cert = "{certs.path('site.pem')}" }} }},
  default_backend = "hap",
}}
backend "hap" {{
  server "haproxy" {{ "127.0.0.1:{h_port}", send_proxy = "v2", proxy_v2_options = {{ "authority" }} }},
}}
"""), ports=[c_port])
    r = curl("--cacert", certs.path("ca.crt"), "--resolve", f"site.test:{c_port}:127.0.0.1",
             "-w", " %{local_port}", f"https://site.test:{c_port}/")
    body, local_port = r.out.rsplit(" ", 1)
    assert body == f"authority=site.test client=127.0.0.1:{local_port}", r.out
