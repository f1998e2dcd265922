"""The admin listener (docs/observability.md): authentication (crypt(3) hashes, bearer
tokens, read-only users), /healthz, /readyz, /stats;csv (the runtime API's `show stat`),
/stats;json, the /stats HTML page, Prometheus /metrics checked by `promtool`, and a real
Prometheus server scraping it. Every request goes through curl or Python's http.client,
as a user's tools would."""

import csv
import http.client
import io
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser

import pytest

from conftest import (SLOW, addr, free_port, run_crescent, runtime_command, self_signed,
                      wait_until)

PASSWORD = "s3cret-pw"
VIEWER_PASSWORD = "look-only"
TOKEN = "tok-0123456789abcdef"


def crypt_hash(password):
    """A SHA-512 crypt(3) hash, as `openssl passwd -6` prints it."""
    r = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password, text=True,
                       capture_output=True, check=True)
    return r.stdout.strip()


def config(admin_port, fe_port, backend_port, sock, extra_admin="", tail=""):
    return f"""
global {{ threads = 2, runtime = {{ socket = "{sock}" }}, lua = {{ budget = 0 }} }}
admin {{
  bind {{ "{addr(admin_port)}" }},
  auth = {{ users = {{ ops = "${{OPS_HASH}}", viewer = "${{VIEWER_HASH}}" }},
           tokens = {{ "${{ADMIN_TOKEN}}" }}, read_only = {{ "viewer" }} }},
  {extra_admin}
}}
frontend "web" {{ bind {{ "{addr(fe_port)}" }}, default_backend = "app" }}
backend "app" {{
  server "nginx1" {{ "{addr(backend_port)}" }},
  server "spare<&>" {{ "{addr(free_port())}", backup = true }},
}}
{tail}
"""


@pytest.fixture
def env():
    return {"OPS_HASH": crypt_hash(PASSWORD), "VIEWER_HASH": crypt_hash(VIEWER_PASSWORD),
            "ADMIN_TOKEN": TOKEN}


@pytest.fixture
def admin(crescent, nginx, sockdir, env):
    """A crescent with an admin listener, a frontend and a backend on a real nginx."""
    ports = {"admin": free_port(), "web": free_port()}
    sock = sockdir / "api.sock"
    c = crescent(config(ports["admin"], ports["web"], nginx.port, sock), env=env,
                 ports=[ports["admin"], ports["web"]])
    c.ports, c.sock = ports, sock
    wait_until(lambda: sock.exists(), 10 * SLOW, "the runtime socket")
    return c


def curl(port, path, *args):
    """(status, headers text, body) of one curl request to the admin port."""
    r = subprocess.run(
        ["curl", "-sS", "--max-time", str(10 * SLOW), "-D", "-", *args,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True)
    head, _, body = r.stdout.partition("\n\n")  # text mode: CR LF read as LF
    status = int(head.split()[1])
    return status, head.lower(), body


def ops(port, path, *args):
    return curl(port, path, "-u", f"ops:{PASSWORD}", *args)


def drive_traffic(port, n):
    """n GET requests through the proxy on one keep-alive connection; all must be 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOW)
    try:
        for _ in range(n):
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            assert r.status == 200
    finally:
        conn.close()


# ---------------------------------------------------------------- authentication


def test_requests_without_valid_credentials_get_401(admin):
    port = admin.ports["admin"]
    status, head, _ = curl(port, "/healthz")
    assert status == 401
    assert 'www-authenticate: basic realm="crescent"' in head
    assert curl(port, "/healthz", "-u", "ops:wrong")[0] == 401
    assert curl(port, "/healthz", "-u", f"nobody:{PASSWORD}")[0] == 401
    assert curl(port, "/healthz", "-H", "Authorization: Bearer not-the-token")[0] == 401
    assert curl(port, "/metrics", "-H", "Authorization: Basic !!!")[0] == 401
    # Good credentials: a user's password, a bearer token.
    status, _, body = ops(port, "/healthz")
    assert (status, body) == (200, "ok\n")
    assert curl(port, "/healthz", "-H", f"Authorization: Bearer {TOKEN}")[:1] == (200,)
    # Every admin request is logged (frontend "admin"), refusals with their reason.
    admin.wait_http_log(lambda d: d["frontend"] == "admin" and d["status"] == 401,
                        what="a 401 log line of the admin frontend")
    admin.wait_http_log(lambda d: d["frontend"] == "admin" and d["status"] == 200
                        and d["request"] == "GET /healthz HTTP/1.1",
                        what="a 200 log line of the admin frontend")
    diagnostics = admin.stderr()
    assert 'frontend "admin": 401 from 127.0.0.1' in diagnostics
    assert 'wrong password for user "ops"' in diagnostics
    assert 'unknown user "nobody"' in diagnostics
    assert PASSWORD not in diagnostics + admin.stdout()  # never a password in a log


def test_read_only_user_may_only_get(admin):
    port = admin.ports["admin"]
    viewer = ("-u", f"viewer:{VIEWER_PASSWORD}")
    assert curl(port, "/stats;csv", *viewer)[0] == 200
    status, _, body = curl(port, "/metrics", *viewer, "-X", "POST")
    assert status == 405 and "read-only" in body
    # Every endpoint is GET: the full user's POST is refused too, without "read-only".
    status, head, body = ops(port, "/metrics", "-X", "POST")
    assert status == 405 and "allow: get, head" in head and "read-only" not in body


def test_unknown_path_gets_the_404_page(admin):
    status, head, body = ops(admin.ports["admin"], "/nope")
    assert status == 404 and "text/html" in head and "404 Not Found" in body


def test_plaintext_password_refused_with_file_line(write_config, sockdir):
    cfg = write_config(
        'admin {\n  bind { "127.0.0.1:1" },\n  auth = { users = { ops = "hunter2" } },\n}\n')
    r = run_crescent(["-c", "-f", str(cfg)])
    assert r.returncode == 1
    assert f"{cfg}:3: admin: " in r.stderr and "crypt(3) hash" in r.stderr, r.stderr
    cfg = write_config('admin { bind { "127.0.0.1:1" } }\n')
    r = run_crescent(["-c", "-f", str(cfg)])
    assert r.returncode == 1 and f"{cfg}:1: admin: auth needs users or tokens" in r.stderr
    cfg = write_config(
        'admin {\n  bind { "127.0.0.1:1" },\n  auth = { tokens = { "t" }, read_only = { "x" } },\n}\n')
    r = run_crescent(["-c", "-f", str(cfg)])
    assert r.returncode == 1 and f'{cfg}:3: admin: auth: read_only: "x" is not one' in r.stderr


def test_admin_over_tls(crescent, tmp_path, env):
    """The admin bind takes `tls = { ... }` like any bind: curl verifies the certificate."""
    cert, key = self_signed(tmp_path, "admin.test")
    port = free_port()
    crescent(f"""
admin {{
  bind {{ "{addr(port)}", tls = {{ cert = "{cert}", key = "{key}" }} }},
  auth = {{ tokens = {{ "${{ADMIN_TOKEN}}" }} }},
}}
""", env=env, ports=[port])
    base = ["curl", "-sS", "--max-time", str(10 * SLOW), "--cacert", str(cert), "--resolve",
            f"admin.test:{port}:127.0.0.1", "-w", "%{http_code}"]
    url = f"https://admin.test:{port}/healthz"
    r = subprocess.run([*base, "-H", f"Authorization: Bearer {TOKEN}", url],
                       capture_output=True, text=True, check=True)
    assert r.stdout == "ok\n200"
    r = subprocess.run([*base, "-o", "/dev/null", url], capture_output=True, text=True,
                       check=True)
    assert r.stdout == "401"


# ---------------------------------------------------------------- stats


def show_stat_rows(sock):
    text = runtime_command(sock, "show stat").rstrip("\n") + "\n"
    return list(csv.DictReader(io.StringIO(text.lstrip("# "))))


def test_stats_csv_is_show_stat(admin):
    drive_traffic(admin.ports["web"], 200)
    status, head, body = ops(admin.ports["admin"], "/stats;csv")
    assert status == 200 and "content-type: text/csv" in head
    assert body.startswith("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,")
    rows = list(csv.DictReader(io.StringIO(body[2:])))
    by = {(r["pxname"], r["svname"]): r for r in rows}
    assert int(by[("web", "FRONTEND")]["req_tot"]) == 200
    assert int(by[("app", "nginx1")]["stot"]) == 200
    assert by[("app", "spare<&>")]["bck"] == "1"
    assert by[("app", "BACKEND")]["status"] == "UP"
    assert set(by) >= {("admin", "FRONTEND"), ("web", "FRONTEND"), ("app", "BACKEND")}
    # The runtime API's show stat: the same header, the same rows (no traffic between,
    # except the admin frontend's own request counters and the lastchg seconds).
    api = show_stat_rows(admin.sock)
    assert list(api[0].keys()) == list(rows[0].keys())
    def stable(r):
        # The admin frontend counts the requests that read the stats; lastchg is seconds.
        moving = {"lastchg"} | ({"scur", "stot", "req_tot"} if r["pxname"] == "admin" else set())
        return {k: v for k, v in r.items() if k not in moving}

    assert [stable(r) for r in api] == [stable(r) for r in rows]


def test_stats_json_matches_csv(admin):
    drive_traffic(admin.ports["web"], 50)
    status, head, body = ops(admin.ports["admin"], "/stats;json")
    assert status == 200 and "application/json" in head
    rows = json.loads(body)
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    _, _, text = ops(admin.ports["admin"], "/stats;csv")
    csv_rows = list(csv.DictReader(io.StringIO(text[2:])))
    assert [(r["pxname"], r["svname"]) for r in rows] == \
        [(r["pxname"], r["svname"]) for r in csv_rows]
    server = next(r for r in rows if r["svname"] == "nginx1")
    assert server["stot"] == 50 and isinstance(server["weight"], int)
    assert server["status"] == "UP" and server["bin"] is None


class PageParser(HTMLParser):
    """Collects text, meta tags and checks that every element opened is closed."""
    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.metas, self.errors = [], [], [], []
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        if tag == "meta":
            self.metas.append(dict(attrs))
        elif tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_stats_page_shows_every_server(admin):
    drive_traffic(admin.ports["web"], 20)
    status, head, body = ops(admin.ports["admin"], "/stats")
    assert status == 200 and "text/html" in head
    p = PageParser()
    p.feed(body)
    p.close()
    assert p.doctype.lower() == "doctype html"
    assert not p.errors and not p.stack, (p.errors, p.stack)
    assert {"http-equiv": "refresh", "content": "10"} in p.metas
    text = "".join(p.text)
    for name in ("nginx1", "spare<&>", "frontend web", "backend app", "Generations"):
        assert name in text, name
    assert "spare&lt;&amp;&gt;" in body  # names are escaped


# ---------------------------------------------------------------- metrics


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: scripts/bootstrap installs the prometheus package")
    return path


def test_metrics_pass_promtool_under_traffic(admin):
    port = admin.ports["admin"]
    threads = [threading.Thread(target=drive_traffic, args=(admin.ports["web"], 150))
               for _ in range(2)]
    for t in threads:
        t.start()
    scraped = []
    while any(t.is_alive() for t in threads) or not scraped:
        scraped.append(ops(port, "/metrics"))
    for t in threads:
        t.join()
    scraped.append(ops(port, "/metrics"))
    for status, head, body in scraped:
        assert status == 200
        assert "content-type: text/plain; version=0.0.4" in head
        r = subprocess.run([promtool(), "check", "metrics"], input=body, text=True,
                           capture_output=True, timeout=30 * SLOW)
        assert r.returncode == 0, r.stdout + r.stderr
    body = scraped[-1][2]
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['crescent_frontend_http_requests_total{proxy="web"}'] == 300
    assert samples['crescent_server_sessions_total{proxy="app",server="nginx1"}'] == 300
    assert samples['crescent_server_status{proxy="app",server="nginx1",state="UP"}'] == 1
    assert samples['crescent_server_status{proxy="app",server="nginx1",state="DOWN"}'] == 0
    assert samples['crescent_backend_up{proxy="app"}'] == 1
    assert samples["crescent_process_nbthread"] == 2
    # The response time histogram: cumulative buckets ending in +Inf = _count.
    hist = 'crescent_backend_http_response_time_seconds'
    assert samples[f'{hist}_bucket{{proxy="app",le="+Inf"}}'] == 300
    assert samples[f'{hist}_count{{proxy="app"}}'] == 300
    buckets = [v for k, v in samples.items() if k.startswith(f'{hist}_bucket{{proxy="app"')]
    assert buckets == sorted(buckets) and len(buckets) == 12
    assert samples['crescent_process_generation_sessions{generation="1",state="current"}'] >= 1
    for family in ("backend_current_queue", "backend_max_queue", "server_weight",
                   "server_response_time_average_seconds", "server_check_failures_total",
                   "server_connection_errors_total", "server_retry_warnings_total",
                   "process_uptime_seconds", "process_reloads_total"):
        assert f"# TYPE crescent_{family} " in body, family


def test_metrics_prefix(crescent, nginx, sockdir, env):
    ports = [free_port(), free_port()]
    c = crescent(config(*ports, nginx.port, sockdir / "api.sock",
                        extra_admin='metrics = { prefix = "haproxy" },'), env=env, ports=ports)
    _, _, body = ops(ports[0], "/metrics")
    assert 'haproxy_frontend_http_requests_total{proxy="web"} 0' in body
    assert "crescent_" not in body
    assert c.running()


# ---------------------------------------------------------------- readiness


def test_readyz_during_a_slow_reload(admin, crescent, nginx, write_config, env):
    port = admin.ports["admin"]
    assert ops(port, "/readyz")[:1] == (200,)
    # The new configuration's on_reload hook holds the reload 1.5 s of CPU time: long
    # enough to see /readyz say 503, which the test polls for (it does not sleep).
    slow = """
on_reload(function()
  local t = os.clock()
  while os.clock() - t < 1.5 do end
end)
"""
    cfg = admin.config
    cfg.write_text(config(admin.ports["admin"], admin.ports["web"], nginx.port, admin.sock,
                          tail=slow))
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "reply", runtime_command(admin.sock, "reload", timeout=60 * SLOW)))
    t.start()
    try:
        status, _, body = wait_until(
            lambda: (lambda r: r if r[0] == 503 else None)(ops(port, "/readyz")),
            30 * SLOW, "/readyz answering 503 during the reload")
        assert "reload is under way" in body
        _, _, healthz = ops(port, "/healthz")
        assert healthz == "ok\n"  # the process still runs
    finally:
        t.join(60 * SLOW)
    assert result["reply"].startswith("Success=1"), result
    wait_until(lambda: ops(port, "/readyz")[0] == 200, 10 * SLOW, "/readyz 200 after it")
    _, _, body = ops(port, "/metrics")
    assert "crescent_process_reloads_total 1" in body
    assert 'crescent_process_generation_sessions{generation="2",state="current"}' in body


# ---------------------------------------------------------------- a real Prometheus


def test_prometheus_scrapes_the_request_rate(admin, tmp_path):
    prom = shutil.which("prometheus")
    if prom is None:
        pytest.fail("prometheus is missing: scripts/bootstrap installs it")
    web = free_port()
    (tmp_path / "prom.yml").write_text(f"""
global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
scrape_configs:
  - job_name: crescent
    basic_auth: {{ username: ops, password: "{PASSWORD}" }}
    static_configs: [ {{ targets: ["{addr(admin.ports['admin'])}"] }} ]
""")
    p = subprocess.Popen(
        [prom, f"--config.file={tmp_path / 'prom.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address={addr(web)}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prom.log", "w"))
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            drive_traffic(admin.ports["web"], 20)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        query = urllib.parse.urlencode(
            {"query": "rate(crescent_frontend_http_requests_total{proxy=\"web\"}[5s])"})

        def rate():
            if p.poll() is not None:
                raise AssertionError((tmp_path / "prom.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"http://{addr(web)}/api/v1/query?{query}",
                                            timeout=5) as r:
                    data = json.load(r)
            except OSError:
                return None
            result = data["data"]["result"]
            return result and float(result[0]["value"][1]) > 0 and result

        wait_until(rate, 60 * SLOW, "a PromQL request rate above 0", interval=0.5)
    finally:
        stop.set()
        t.join(30 * SLOW)
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
