"""Lua at request time, end to end: an http_request hook that replies, denies, edits the
request on its way to nginx and picks the backend; a service that reads the body; a
hook that raises or never returns fails only its own request."""

import os
import re

import pytest

from conftest import SLOW, addr, curl, free_port

CONFIG = r"""
global { threads = 1 }
defaults {
  mode = "http",
  timeout = { connect = "2s", client = "10s", server = "10s", http_request = "5s" },
}

frontend "public" {
  bind { "%(bind)s" },
  http_request = function(txn)
    local p = txn.req.path
    if p == "/reply" then
      return txn:reply(201, "made\n", { ["x-made-by"] = "hook" })
    elseif p == "/deny" then
      return txn:deny()
    elseif p == "/deny418" then
      return txn:deny(418)
    elseif p == "/edit" then
      txn.req:set_header("x-hook", "set-by-hook")
      txn.req:del_header("x-secret")
      txn.req:set_path("/hdr")
    elseif p == "/info" then
      return txn:reply(200, string.format("%%s q=%%s src=%%s fe=%%s h=%%s\n", txn.req.method,
        txn.req.query, txn.src, txn.frontend, txn.req:header("X-Mixed-Case") or "-"))
    elseif p == "/svc" or txn.req:header("x-to-service") then
      return txn:use_backend("svc")
    elseif p == "/boom" then
      error("boom on purpose")
    elseif p == "/spin" then
      while true do end
    end
  end,
  default_backend = "web",
}

backend "web" {
  server "nginx" { "%(nginx)s" },
}

backend "svc" {
  service = function(applet)
    local body = applet:receive()
    local sample = 0
    for i = 1, #body, 4096 do sample = (sample + body:byte(i)) %% 65521 end
    local ua = applet.headers["user-agent"]
    local out = string.format("method=%%s path=%%s qs=%%s len=%%d sample=%%d ua=%%s\n",
      applet.method, applet.path, applet.qs, #body, sample, ua and ua[1] or "-")
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:start_response()
    applet:send(out)
  end,
}
"""


@pytest.fixture
def proxy(crescent, nginx):
    port = free_port()
    c = crescent(CONFIG % {"bind": addr(port), "nginx": addr(nginx.port)}, ports=[port])
    c.url = f"http://{addr(port)}"
    return c


def test_reply(proxy):
    r = curl("-i", f"{proxy.url}/reply")
    assert r.out.startswith("HTTP/1.1 201"), r.out
    assert re.search(r"^x-made-by: hook\r$", r.out, re.M | re.I), r.out
    assert r.out.endswith("\r\n\r\nmade\n"), r.out
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /reply HTTP/1.1")
    assert d["status"] == 201


def test_deny(proxy):
    assert curl("-o", os.devnull, "-w", "%{http_code}", f"{proxy.url}/deny").out == "403"
    assert curl("-o", os.devnull, "-w", "%{http_code}", f"{proxy.url}/deny418").out == "418"
    d = proxy.wait_http_log(lambda d: d["request"] == "GET /deny HTTP/1.1")
    assert d["status"] == 403


def test_request_fields(proxy):
    r = curl("-H", "x-mixed-case: yes", f"{proxy.url}/info?a=1&b=2")
    assert r.out == "GET q=a=1&b=2 src=127.0.0.1 fe=public h=yes\n", r.out


def test_edit_request_before_server(proxy):
    r = curl("-H", "X-Secret: hunter2", "-H", "X-Hook: from-client", f"{proxy.url}/edit?q=1")
    assert r.out == "x-hook=set-by-hook x-secret= uri=/hdr args=q=1\n", r.out


def test_use_backend_to_service_with_body(proxy):
    body = os.urandom(256 * 1024)
    sample = sum(body[i] for i in range(0, len(body), 4096)) % 65521
    r = curl("--data-binary", "@-", "-A", "hooks-test", f"{proxy.url}/svc?x=y",
             input_bytes=body)
    assert r.out == f"method=POST path=/svc qs=x=y len={len(body)} sample={sample} ua=hooks-test\n"
    r = curl("-H", "x-to-service: 1", f"{proxy.url}/anything")
    assert r.out.startswith("method=GET path=/anything qs= len=0 sample=0 ua=curl/"), r.out


def test_hook_error_is_500_and_logged(proxy):
    r = curl("-o", os.devnull, "-w", "%{http_code}", f"{proxy.url}/boom")
    assert r.out == "500"
    assert "boom on purpose" in proxy.stderr()
    assert "traceback" in proxy.stderr()
    assert curl(f"{proxy.url}/reply").out == "made\n"  # the Lua state still works


def test_runaway_hook_cut_off(proxy):
    r = curl("-o", os.devnull, "-w", "%{http_code} %{time_total}", f"{proxy.url}/spin",
             timeout=20 * SLOW)
    code, elapsed = r.out.split()
    assert code == "500", r.out
    assert float(elapsed) <= 5 * SLOW, f"cut off after {elapsed}s; the budget is 1 s"
    assert "time budget" in proxy.stderr()
    assert curl(f"{proxy.url}/reply").out == "made\n"
