"""The examples run as documented: quickstart balances between its two Lua demo
services and answers /ping from its hook; env.lua takes its settings from the
environment and refuses to load without the required ones."""

import re

from conftest import EXAMPLES, addr, curl, free_port, run_crescent, wait_until


def test_quickstart(crescent):
    public, demo1, demo2 = free_port(), free_port(), free_port()
    env = {"CRESCENT_ADDR": addr(public), "DEMO1_ADDR": addr(demo1), "DEMO2_ADDR": addr(demo2)}
    c = crescent(EXAMPLES / "quickstart.lua", ports=[public, demo1, demo2], env=env)

    # Round robin over two servers: four requests reach both, two each.
    bodies = [curl(f"http://{addr(public)}/").out for _ in range(4)]
    for b in bodies:
        assert re.match(r"^hello from demo [12] \(GET /\)\n$", b), bodies
    assert sum("demo 1" in b for b in bodies) == 2, bodies
    assert sum("demo 2" in b for b in bodies) == 2, bodies

    # One client connection, keep-alive, still balanced.
    r = curl("-v", *[f"http://{addr(public)}/k{i}" for i in range(4)])
    assert r.out.count("hello from demo 1") == 2 and r.out.count("hello from demo 2") == 2, r.out
    assert "Re-using existing connection" in r.err

    r = curl("-i", f"http://{addr(public)}/ping")
    assert r.out.startswith("HTTP/1.1 200"), r.out
    assert r.out.endswith("\r\n\r\npong\n"), r.out

    # The demo services answer directly too.
    assert curl(f"http://{addr(demo1)}/x").out == "hello from demo 1 (GET /x)\n"
    assert curl(f"http://{addr(demo2)}/y").out == "hello from demo 2 (GET /y)\n"

    d = c.wait_http_log(lambda d: d["request"] == "GET /ping HTTP/1.1" and d["frontend"] == "public")
    assert d["status"] == 200
    served = {d["server"] for d in c.http_logs() if d["frontend"] == "public" and d["request"] == "GET / HTTP/1.1"}
    assert served == {"demo1", "demo2"}, served


def test_env_example(crescent):
    public, app = free_port(), free_port()
    env = {
        "ENV_DEMO_ADDR": addr(public),
        "ENV_DEMO_APP_ADDR": addr(app),
        "ENV_DEMO_SITE": "blue",
        "ENV_DEMO_GREETING": "bonjour",
    }
    crescent(EXAMPLES / "env.lua", ports=[public, app], env=env)
    r = curl("-i", f"http://{addr(public)}/")
    assert r.out.startswith("HTTP/1.1 200"), r.out
    assert r.out.endswith("bonjour from site blue\n"), r.out


def test_env_example_required_variables():
    base = {"ENV_DEMO_ADDR": "127.0.0.1:1", "ENV_DEMO_APP_ADDR": "127.0.0.1:2"}
    path = str(EXAMPLES / "env.lua")

    # ${NAME:?message}: the message, with the file and line.
    env = dict(base, ENV_DEMO_ADDR="")
    r = run_crescent(["-c", "-f", path], env=env)
    assert r.returncode == 1, r.stderr
    assert re.search(re.escape(path) + r":\d+: .*set ENV_DEMO_ADDR to the address", r.stderr), r.stderr

    # ${NAME}: names the variable.
    env = {k: v for k, v in base.items() if k != "ENV_DEMO_APP_ADDR"}
    r = run_crescent(["-c", "-f", path], env=env, unset=["ENV_DEMO_APP_ADDR"])
    assert r.returncode == 1, r.stderr
    assert re.search(re.escape(path) + r":\d+: .*ENV_DEMO_APP_ADDR", r.stderr), r.stderr


def test_port_exhaustion_example(crescent):
    """Connections to the server leave from 127.0.0.2 and 127.0.0.3 in turn. Each one is
    new here: a client connection's first request, and a request with a body, never take
    an idle pooled connection (http_reuse "safe")."""
    import socket

    public, app = free_port(), free_port()
    env = {"CRESCENT_ADDR": addr(public), "APP_ADDR": addr(app)}
    crescent(EXAMPLES / "port-exhaustion.lua", ports=[public, app], env=env)

    r = curl("-i", f"http://{addr(public)}/")
    assert r.out.startswith("HTTP/1.1 200"), r.out
    assert r.out.endswith("\r\n\r\nhello from the app, you came from 127.0.0.2\n"), r.out

    # A POST whose body is not sent yet holds its (second) connection busy. The service's
    # 100 Continue, passed back to us, shows the request has reached it.
    with socket.create_connection(("127.0.0.1", public), timeout=10) as busy:
        busy.sendall(b"POST /busy HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = busy.recv(4096)
            assert chunk, got
            got += chunk
        assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got
        got = got[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]

        assert curl(f"http://{addr(public)}/").out == "hello from the app, you came from 127.0.0.2\n"

        busy.sendall(b"body")
        while not (b"came from" in got and got.endswith(b"\n")):
            chunk = busy.recv(4096)
            assert chunk, got
            got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got
    assert got.endswith(b"\r\n\r\nhello from the app, you came from 127.0.0.3\n"), got


def test_hot_reload_example(crescent, tmp_path):
    """The example reloads itself when edited (watch = true) and through the runtime
    socket; its shared dictionary counts requests across generations."""
    public = free_port()
    sock = tmp_path / "api.sock"
    cfg = tmp_path / "hot-reload.lua"
    text = (EXAMPLES / "hot-reload.lua").read_text()
    cfg.write_text(text)
    env = {"HOT_RELOAD_ADDR": addr(public), "HOT_RELOAD_SOCKET": str(sock)}
    c = crescent(cfg, ports=[public], env=env)
    assert curl(f"http://{addr(public)}/").out == "version 1: request 1 since start\n"

    # Saved with a new version: the file watch reloads it, the count goes on.
    tmp = tmp_path / "edit.tmp"
    tmp.write_text(text.replace('local VERSION = "1"', 'local VERSION = "2"'))
    tmp.rename(cfg)
    out = wait_until(
        lambda: (lambda o: o if o.startswith("version 2") else None)(
            curl(f"http://{addr(public)}/").out),
        10, "the edited example to serve version 2")
    assert re.fullmatch(r"version 2: request \d+ since start\n", out), out
    assert int(out.split()[3]) >= 2, out

    # And through the runtime socket.
    cfg.write_text(text.replace('local VERSION = "1"', 'local VERSION = "3"'))
    r = run_crescent(["reload", "-s", str(sock)])
    assert r.returncode == 0 and r.stdout.startswith("Success=1"), (r.stdout, r.stderr)
    assert curl(f"http://{addr(public)}/").out.startswith("version 3: request ")
    # The on_reload hook ran in each new generation, with both ids.
    wait_until(lambda: "generation 2 -> 3: version 3" in c.stderr(), 5, "the on_reload log line")
    assert "generation 1 -> 2: version 2" in c.stderr(), c.stderr()


def test_auth_subrequest_example(crescent, nginx_with):
    """examples/auth-subrequest.lua with a real nginx as the auth service and the app."""
    auth, app, public = free_port(), free_port(), free_port()
    nginx_with(f"""
    server {{
        listen 127.0.0.1:{auth};
        location = /auth {{
            if ($http_authorization = "Bearer good") {{
                add_header X-User alice;
                return 204;
            }}
            if ($http_authorization = "Bearer banned") {{ return 403; }}
            return 401;
        }}
    }}
    server {{
        listen 127.0.0.1:{app};
        location / {{ default_type text/plain; return 200 "app $uri user=$http_x_user\\n"; }}
    }}
""", [auth, app])
    env = {"AUTH_URL": f"http://{addr(auth)}/auth", "APP_ADDR": addr(app),
           "LISTEN": addr(public), "THREADS": "1"}
    c = crescent(EXAMPLES / "auth-subrequest.lua", ports=[public], env=env)
    url = f"http://{addr(public)}/page"
    assert curl("-s", "-H", "Authorization: Bearer good", url).out == "app /page user=alice\n"
    assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", url).out == "401"
    r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer banned",
             url)
    assert r.out == "403"
    wait_until(lambda: "user=alice" in c.stdout(), 5, "the custom log line")
    assert "GET /page -> 200 user=alice" in c.stdout()


def test_sni_routing_example(crescent, nginx_with, tmp_path):
    """examples/sni-routing.lua in front of two TLS nginx servers: the name picks one."""
    import subprocess

    from conftest import self_signed

    a, b, public = free_port(), free_port(), free_port()
    a_cert, a_key = self_signed(tmp_path, "a.test")
    b_cert, b_key = self_signed(tmp_path, "b.test")
    nginx_with(f"""
    server {{ listen 127.0.0.1:{a} ssl; ssl_certificate {a_cert}; ssl_certificate_key {a_key};
             location / {{ return 200 "A\\n"; }} }}
    server {{ listen 127.0.0.1:{b} ssl; ssl_certificate {b_cert}; ssl_certificate_key {b_key};
             location / {{ return 200 "B\\n"; }} }}
""", [a, b])
    env = {"LISTEN": addr(public), "A_SERVER": addr(a), "B_SERVER": addr(b), "THREADS": "1"}
    c = crescent(EXAMPLES / "sni-routing.lua", ports=[public], env=env)
    for name, cert, want in (("a.test", a_cert, "A\n"), ("b.test", b_cert, "B\n")):
        # curl verifies the server's own certificate: the TLS session is nginx's.
        r = curl("-s", "--cacert", cert, "--resolve", f"{name}:{public}:127.0.0.1",
                 f"https://{name}:{public}/")
        assert r.out == want, (name, r.out, r.err)
    r = subprocess.run(["openssl", "s_client", "-connect", addr(public), "-servername", "c.test"],
                       input=b"", capture_output=True, timeout=30)
    assert b"CN = " not in r.stdout, r.stdout
    wait_until(lambda: "sni=b.test" in c.stdout(), 5, "the log line")
    assert "sni=a.test a/a1 --" in c.stdout(), c.stdout()


def test_redis_rate_limit_example(crescent, redis, nginx):
    public = free_port()
    env = {"REDIS_PORT": str(redis.port), "APP_ADDR": addr(nginx.port), "LISTEN": addr(public),
           "RATE_LIMIT": "3", "THREADS": "1"}
    crescent(EXAMPLES / "redis-rate-limit.lua", ports=[public], env=env)
    codes = [curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Api-Key: k1",
                  f"http://{addr(public)}/index.html").out for _ in range(5)]
    assert codes == ["200", "200", "200", "429", "429"], codes
    r = curl("-s", "-i", "-H", "X-Api-Key: k2", f"http://{addr(public)}/index.html")
    assert "x-ratelimit-remaining: 2" in r.out.lower(), r.out
    keys = redis.command("KEYS", "rate:*")
    assert len(keys) == 2 and all(0 < redis.command("TTL", k) <= 60 for k in keys), keys
