"""TLS termination on binds and TLS to servers, with real clients and a real server:
curl and `openssl s_client` get the certificate of the name they ask for (SNI), ALPN
http/1.1 is agreed, a TLS 1.1 client is refused by min_version = "1.2", a .pem holding
the certificate and its key is accepted, a missing certificate is a config error with
file:line, and TLS to an nginx TLS backend verifies its certificate (503 with a wrong
CA). Handshakes are logged on stderr (one info line each: version, cipher, SNI, ALPN).
Certificates are made with the openssl CLI in tmp_path."""

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import NGINX_HEAD, SLOW, Process, addr, curl, free_port, run_crescent, wait_until

# ---------------------------------------------------------------------------
# Certificates (openssl CLI)


def openssl(*args, cwd=None, input_text=""):
    r = subprocess.run(["openssl", *map(str, args)], cwd=cwd, input=input_text,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(map(str, args))}: {r.stderr}"
    return r


class Certs:
    """A CA (ca.crt) and leaf certificates signed by it, in `dir`."""

    def __init__(self, d, ca="ca"):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", "2", "-subj", f"/CN=crescent test {ca}",
                "-keyout", self.path(f"{ca}.key"), "-out", self.path(f"{ca}.crt"))

    def path(self, name):
        return str(self.dir / name)

    def leaf(self, name, *dns):
        """name.crt, name.key and name.pem (both together) for the DNS names."""
        key, csr, crt = self.path(f"{name}.key"), self.path(f"{name}.csr"), self.path(f"{name}.crt")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", f"/CN={dns[0]}", "-keyout", key, "-out", csr)
        ext = self.path(f"{name}.ext")
        Path(ext).write_text("subjectAltName = " + ",".join(f"DNS:{d}" for d in dns) + "\n"
                             "basicConstraints = CA:FALSE\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.path(f"{self.ca}.crt"),
                "-CAkey", self.path(f"{self.ca}.key"), "-CAcreateserial", "-days", "2",
                "-extfile", ext, "-out", crt)
        Path(self.path(f"{name}.pem")).write_text(Path(crt).read_text() + Path(key).read_text())
        return self


@pytest.fixture
def certs(tmp_path):
    c = Certs(tmp_path / "certs")
    c.leaf("site", "site.test", "www.site.test")
    c.leaf("other", "other.test", "*.wild.test")
    return c


def s_client(port, *args, timeout=30 * SLOW):
    """openssl s_client against 127.0.0.1:port; returns (returncode, stdout + stderr)."""
    r = subprocess.run(["openssl", "s_client", "-connect", addr(port), *map(str, args)],
                       input="", capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def subject_cn(output):
    m = re.search(r"^subject=.*?CN ?= ?([^,\n]+)", output, re.M)
    return m.group(1).strip() if m else None


# ---------------------------------------------------------------------------
# An nginx serving HTTPS (a copy of conftest's plain one, with ssl)

NGINX_TLS_CONF = NGINX_HEAD + """
    access_log {prefix}/access.log;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {prefix}/html;
        location = /who {{
            default_type text/plain;
            return 200 "tls=$ssl_protocol sni=$ssl_server_name\\n";
        }}
        location /upload/ {{
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }}
    }}
}}
"""


class TlsNginx(Process):
    def __init__(self, workdir, port, cert, key):
        self.prefix = Path(workdir)
        self.port = port
        self.root = self.prefix / "html"
        for d in ("html/upload", "tmp", "logs"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        (self.root / "index.html").write_text("<h1>hello from nginx over TLS</h1>\n")
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_TLS_CONF.format(prefix=self.prefix, port=port, cert=cert, key=key))
        super().__init__(
            "nginx-tls",
            ["/usr/sbin/nginx", "-p", self.prefix, "-c", conf, "-e", self.prefix / "error.log"],
            self.prefix,
        )


@pytest.fixture
def tls_nginx(tmp_path, certs):
    n = TlsNginx(tmp_path / "nginx-tls", free_port(), certs.path("site.crt"),
                 certs.path("site.key"))
    try:
        n.wait_ready([n.port])
        yield n
    finally:
        import signal

        n.stop(signal.SIGQUIT)


# ---------------------------------------------------------------------------
# Configs

SERVICE = """
global {{ threads = 1 }}
defaults {{ mode = "http", timeout = {{ connect = "2s", client = "10s", server = "10s" }} }}

frontend "tls" {{
  bind {{ "{bind}", tls = {{
    cert = "{certs}/site.pem",
    certs = {{ {{ cert = "{certs}/other.crt", key = "{certs}/other.key" }} }},
    alpn = {{ "http/1.1" }},
    min_version = "1.2",
  }} }},
  default_backend = "app",
}}

backend "app" {{
  service = function(applet)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:start_response()
    applet:send("hello over tls\\n")
  end,
}}
"""


def service_config(port, certs):
    return SERVICE.format(bind=addr(port), certs=certs.dir)


def https(ca, port, name, path="/", *args, check=True):
    """curl https://name:port/path, name resolved to 127.0.0.1, verified against `ca`."""
    return curl("--cacert", ca, "--resolve", f"{name}:{port}:127.0.0.1",
                f"https://{name}:{port}{path}", *args, check=check)


@pytest.fixture
def tls_front(crescent, port, certs):
    p = port()
    c = crescent(service_config(p, certs), ports=[p])
    return c, p


# ---------------------------------------------------------------------------
# Termination on a bind


def test_curl_gets_the_certificate_of_the_name_it_asks_for(tls_front, certs):
    c, p = tls_front
    # curl verifies the certificate against ca.crt and the name: success is the check.
    for name in ("site.test", "www.site.test", "other.test", "x.wild.test"):
        r = https(certs.path("ca.crt"), p, name, "/", "-w", "\\n%{http_code} %{ssl_verify_result}")
        assert r.out.splitlines()[-1] == "200 0", (name, r.out, r.err)
        assert "hello over tls" in r.out


def test_s_client_sni_certificate_and_default(tls_front, certs):
    c, p = tls_front
    ca = certs.path("ca.crt")
    for name, cn in (("other.test", "other.test"), ("site.test", "site.test"),
                     ("a.wild.test", "other.test"), ("unknown.test", "site.test")):
        rc, out = s_client(p, "-servername", name, "-CAfile", ca)
        assert subject_cn(out) == cn, (name, out)
        assert "Verify return code: 0 (ok)" in out, out
    # No SNI at all: the first certificate, the default.
    rc, out = s_client(p, "-noservername", "-CAfile", ca)
    assert subject_cn(out) == "site.test", out


def test_alpn_http11_negotiated(tls_front, certs):
    c, p = tls_front
    rc, out = s_client(p, "-servername", "site.test", "-alpn", "h2,http/1.1")
    assert "ALPN protocol: http/1.1" in out, out
    rc, out = s_client(p, "-servername", "site.test", "-alpn", "spdy/3")
    assert "No ALPN negotiated" in out, out  # no overlap is not a failure
    assert "Cipher is" in out and "(NONE)" not in out.split("Cipher is")[1].split("\n")[0]


def test_tls11_refused_by_min_version(tls_front):
    c, p = tls_front
    # Security level 0, or OpenSSL 3 would not even offer TLS 1.1: the server must refuse.
    rc, out = s_client(p, "-servername", "site.test", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0, out
    assert re.search(r"alert protocol version|unsupported protocol", out), out
    wait_until(lambda: "TLS handshake failed: unsupported protocol" in c.stderr(), 5 * SLOW,
               "the refusal in the log")
    # TLS 1.2 is still welcome.
    rc, out = s_client(p, "-servername", "site.test", "-tls1_2")
    assert "Protocol  : TLSv1.2" in out or "TLSv1.2" in out, out
    assert rc == 0, out


def test_handshake_logged_with_version_and_cipher(tls_front, certs):
    c, p = tls_front
    https(certs.path("ca.crt"), p, "other.test")
    line = wait_until(
        lambda: next((l for l in c.stderr().splitlines() if "TLS from 127.0.0.1" in l), None),
        5 * SLOW, "the handshake info line")
    assert 'frontend "tls"' in line, line
    assert re.search(r'TLSv1\.3 TLS_\w+, sni "other\.test", alpn "http/1\.1", new session', line), line
    # And the request itself in the traffic log.
    c.wait_http_log(lambda d: d["frontend"] == "tls" and d["status"] == 200)


def test_keep_alive_and_plain_text_on_a_tls_port(tls_front, certs):
    c, p = tls_front
    # Two requests on one TLS connection.
    ca = certs.path("ca.crt")
    r = https(ca, p, "site.test", "/a", "--next", "--cacert", ca, "--resolve",
              f"site.test:{p}:127.0.0.1", f"https://site.test:{p}/b", "-v")
    assert r.out.count("hello over tls") == 2, r.out
    assert "Re-using existing connection" in r.err, r.err
    # Plain HTTP to the TLS port: refused with a log line, never served.
    r = curl(f"http://127.0.0.1:{p}/", check=False)
    assert r.returncode != 0 or "hello" not in r.out
    wait_until(lambda: "TLS handshake failed" in c.stderr(), 5 * SLOW, "the failure line")


def test_bad_certificate_path_is_a_config_error(write_config, certs, port):
    text = service_config(port(), certs).replace(f"{certs.dir}/other.crt", "/nonexistent/other.crt")
    cfg = write_config(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if '"' in l and "bind {" in l)
    r = run_crescent(["-c", "-f", cfg])
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip() == (
        f'{cfg}:{line}: frontend "tls": bind: cannot load certificate "/nonexistent/other.crt": '
        "No such file or directory"), r.stderr
    # A file that is not a certificate.
    junk = certs.dir / "junk.pem"
    junk.write_text("hello\n")
    cfg = write_config(service_config(port(), certs).replace(f"{certs.dir}/site.pem", str(junk)))
    r = run_crescent(["-c", "-f", cfg])
    assert r.returncode == 1
    assert f'cannot load certificate "{junk}": no start line' in r.stderr, r.stderr
    # And the good one is valid.
    r = run_crescent(["-c", "-f", write_config(service_config(port(), certs))])
    assert r.returncode == 0, r.stderr


def test_tcp_mode_over_tls(crescent, port, certs, nginx):
    p = port()
    cfg = f"""
global {{ threads = 1 }}
frontend "tcp-tls" {{
  mode = "tcp",
  bind {{ "{addr(p)}", tls = {{ cert = "{certs.path('site.pem')}" }} }},
  default_backend = "web",
}}
backend "web" {{ mode = "tcp", server "nginx" {{ "{addr(nginx.port)}" }} }}
"""
    crescent(cfg, ports=[p])
    r = https(certs.path("ca.crt"), p, "site.test", "/")
    assert "hello from nginx" in r.out


# ---------------------------------------------------------------------------
# TLS to servers


def proxy_config(p, backend_tls, nginx_port, front_tls=""):
    return f"""
global {{ threads = 1 }}
defaults {{ mode = "http", retries = 1,
            timeout = {{ connect = "2s", client = "10s", server = "10s" }} }}
frontend "public" {{
  bind {{ "{addr(p)}"{front_tls} }},
  default_backend = "secure",
}}
backend "secure" {{
  server "nginx" {{ "{addr(nginx_port)}", tls = {backend_tls} }},
}}
"""


def test_tls_to_nginx_verified(crescent, port, certs, tls_nginx):
    p = port()
    tls = f'{{ verify = "required", ca = "{certs.path("ca.crt")}", sni = "site.test" }}'
    c = crescent(proxy_config(p, tls, tls_nginx.port), ports=[p])
    r = curl(f"http://127.0.0.1:{p}/who")
    assert r.out.strip() == "tls=TLSv1.3 sni=site.test", r.out
    r = curl(f"http://127.0.0.1:{p}/")
    assert "hello from nginx over TLS" in r.out
    c.wait_http_log(lambda d: d["status"] == 200 and d["server"] == "nginx")


def test_tls_to_nginx_refused_with_a_wrong_ca_or_name(crescent, port, certs, tmp_path, tls_nginx):
    other = Certs(tmp_path / "other-ca", ca="other-ca")
    p1, p2, p3 = port(), port(), port()
    wrong_ca = f'{{ ca = "{other.path("other-ca.crt")}", sni = "site.test" }}'
    c1 = crescent(proxy_config(p1, wrong_ca, tls_nginx.port), ports=[p1])
    r = curl(f"http://127.0.0.1:{p1}/", "-w", "%{http_code}", "-o", "/dev/null")
    assert r.out == "503", r.out
    wait_until(lambda: "TLS handshake failed: certificate verify failed: unable to get local "
               "issuer certificate" in c1.stderr(), 5 * SLOW, "the verify failure")
    wrong_name = f'{{ ca = "{certs.path("ca.crt")}", sni = "nope.test" }}'
    c2 = crescent(proxy_config(p2, wrong_name, tls_nginx.port), ports=[p2])
    r = curl(f"http://127.0.0.1:{p2}/", "-w", "%{http_code}", "-o", "/dev/null")
    assert r.out == "503", r.out
    wait_until(lambda: "certificate verify failed: hostname mismatch" in c2.stderr(), 5 * SLOW,
               "the name mismatch")
    # verify = "none" accepts it.
    c3 = crescent(proxy_config(p3, '{ verify = "none" }', tls_nginx.port), ports=[p3])
    r = curl(f"http://127.0.0.1:{p3}/who")
    assert r.out.startswith("tls=TLSv1.3"), r.out


def test_tls_both_sides_10mb_up_and_down(crescent, port, certs, tls_nginx):
    p = port()
    ca = certs.path("ca.crt")
    backend_tls = f'{{ ca = "{certs.path("ca.crt")}", sni = "site.test" }}'
    front_tls = f', tls = {{ cert = "{certs.path("site.pem")}" }}'
    crescent(proxy_config(p, backend_tls, tls_nginx.port, front_tls), ports=[p])
    blob = os.urandom(10 * 1024 * 1024)
    digest = hashlib.sha256(blob).hexdigest()
    r = curl("--cacert", ca, "--resolve", f"site.test:{p}:127.0.0.1",
             "-T", "-", "-H", "Transfer-Encoding: chunked", f"https://site.test:{p}/upload/blob",
             "-w", "%{http_code}", input_bytes=blob)
    assert r.out.endswith(("201", "204")), r.out
    assert hashlib.sha256((tls_nginx.root / "upload" / "blob").read_bytes()).hexdigest() == digest
    r = subprocess.run(["curl", "-sS", "--cacert", ca, "--resolve",
                        f"site.test:{p}:127.0.0.1", f"https://site.test:{p}/upload/blob"],
                       capture_output=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == digest


def test_proxy_header_then_tls_both_ways(crescent, port, certs):
    """Chained over loopback: the first hop sends a PROXY v2 header then TLS to the
    second, which accepts the header then terminates TLS (the ClientHello usually comes
    in the same read as the header: those bytes must reach the handshake)."""
    p_front, p_back = port(), port()
    cfg = f"""
global {{ threads = 1 }}
defaults {{ mode = "http", timeout = {{ connect = "2s", client = "10s", server = "10s" }} }}
frontend "edge" {{
  bind {{ "{addr(p_front)}" }},
  default_backend = "inner",
}}
backend "inner" {{
  server "hop" {{ "{addr(p_back)}", send_proxy = "v2",
                 tls = {{ ca = "{certs.path('ca.crt')}", sni = "www.site.test" }} }},
}}
frontend "terminator" {{
  bind {{ "{addr(p_back)}", accept_proxy = true,
         tls = {{ cert = "{certs.path('site.pem')}", alpn = {{ "http/1.1" }} }} }},
  default_backend = "app",
}}
backend "app" {{
  service = function(applet)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:start_response()
    applet:send("from terminator\\n")
  end,
}}
"""
    c = crescent(cfg, ports=[p_front, p_back])
    for _ in range(3):
        r = curl(f"http://127.0.0.1:{p_front}/")
        assert r.out == "from terminator\n", r.out
    line = wait_until(
        lambda: next((l for l in c.stderr().splitlines() if 'frontend "terminator"' in l
                      and "TLS from" in l), None), 5 * SLOW, "the handshake line")
    assert re.search(r'TLS from 127\.0\.0\.1:\d+: TLSv1\.3 .*sni "www\.site\.test"', line), line
    c.wait_http_log(lambda d: d["frontend"] == "terminator" and d["status"] == 200)


def checked_config(p, backend_tls, nginx_port):
    return f"""
global {{ threads = 1 }}
defaults {{ mode = "http", timeout = {{ connect = "2s", client = "10s", server = "10s" }} }}
frontend "public" {{ bind {{ "{addr(p)}" }}, default_backend = "secure" }}
backend "secure" {{
  check = {{ http = "GET /who", inter = "100ms", rise = 1, fall = 1 }},
  server "nginx" {{ "{addr(nginx_port)}", tls = {backend_tls}, check = true }},
}}
"""


def test_health_checks_of_a_tls_server_use_tls(crescent, port, certs, tmp_path, tls_nginx):
    """A server reached over TLS is checked over TLS (HAProxy's `ssl` implies
    `check-ssl`): the HTTP check passes through the handshake and nginx logs the check's
    request; with a CA that does not sign nginx's certificate the handshake fails, the
    check says Layer6 and the server goes DOWN."""
    p1, p2 = port(), port()
    good = f'{{ ca = "{certs.path("ca.crt")}", sni = "site.test" }}'
    c1 = crescent(checked_config(p1, good, tls_nginx.port), ports=[p1])
    log = tls_nginx.prefix / "access.log"
    wait_until(lambda: log.exists() and log.read_text().count("GET /who") >= 3, 10 * SLOW,
               "check requests logged by nginx")
    assert "Health check for server secure/nginx failed" not in c1.stderr(), c1.stderr()
    assert "is DOWN" not in c1.stderr(), c1.stderr()
    assert curl(f"http://127.0.0.1:{p1}/who").out.strip() == "tls=TLSv1.3 sni=site.test"

    other = Certs(tmp_path / "other-ca", ca="other-ca")
    bad = f'{{ ca = "{other.path("other-ca.crt")}", sni = "site.test" }}'
    c2 = crescent(checked_config(p2, bad, tls_nginx.port), ports=[p2])
    wait_until(lambda: "Layer6 invalid response" in c2.stderr() and
               "TLS handshake failed: certificate verify failed" in c2.stderr(),
               10 * SLOW, "the failed TLS check")
    wait_until(lambda: "secure/nginx is DOWN" in c2.stderr(), 10 * SLOW, "the server DOWN")
