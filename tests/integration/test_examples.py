"""The examples run as documented: quickstart balances between its two Lua demo
services and answers /ping from its hook; env.lua takes its settings from the
environment and refuses to load without the required ones."""

import re

from conftest import EXAMPLES, addr, curl, free_port, run_crescent


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
