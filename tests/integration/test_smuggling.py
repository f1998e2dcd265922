"""Requests shaped to smuggle a second request past a proxy are refused (400; 501 for an
unknown transfer coding) with a log line, never forwarded; the
connection is closed and the process keeps serving. Raw sockets, one connection each."""

import re
import socket
import time

import pytest

from conftest import SLOW, addr, free_port

CONFIG = """
global {{ threads = 1, bufsize = "16k" }}
defaults {{
  mode = "http",
  timeout = {{ connect = "2s", client = "5s", server = "5s", http_request = "5s" }},
}}
frontend "public" {{
  bind {{ "{bind}" }},
  default_backend = "web",
}}
backend "web" {{
  server "nginx" {{ "{nginx}" }},
}}
"""

H = "Host: example\r\n"
SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: example\r\n\r\n"

# name -> raw request. Each one is malformed in a way that lets two parsers disagree.
HEAD_CASES = {
    "cl_and_te": (
        f"POST /xff HTTP/1.1\r\n{H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"0\r\n\r\n{SMUGGLED}"
    ),
    "te_and_cl": (
        f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        f"0\r\n\r\n{SMUGGLED}"
    ),
    "duplicate_differing_cl": (
        f"POST /xff HTTP/1.1\r\n{H}Content-Length: 0\r\nContent-Length: {len(SMUGGLED)}\r\n\r\n"
        f"{SMUGGLED}"
    ),
    "cl_list_differing": (
        f"POST /xff HTTP/1.1\r\n{H}Content-Length: 0, {len(SMUGGLED)}\r\n\r\n{SMUGGLED}"
    ),
    "cl_not_a_number": f"POST /xff HTTP/1.1\r\n{H}Content-Length: +5\r\n\r\nhello",
    "te_not_chunked_last": (
        f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"
    ),
    "te_unknown": f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "obs_fold": f"GET /xff HTTP/1.1\r\n{H}X-Folded: a\r\n b\r\n\r\n",
    "obs_fold_te": (
        f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    ),
    "bare_lf_request_line": "GET /xff HTTP/1.1\nHost: example\r\n\r\n",
    "bare_lf_header": f"GET /xff HTTP/1.1\r\nHost: example\nX-A: b\r\n\r\n",
    "bare_lf_everywhere": "GET /xff HTTP/1.1\nHost: example\n\n",
    "invalid_header_name": f"GET /xff HTTP/1.1\r\n{H}Bad(Name: x\r\n\r\n",
    "space_in_header_name": f"GET /xff HTTP/1.1\r\n{H}X Y: x\r\n\r\n",
    "space_before_colon": f"POST /xff HTTP/1.1\r\n{H}Content-Length : 5\r\n\r\nhello",
    "tab_before_colon": f"GET /xff HTTP/1.1\r\n{H}X-A\t: b\r\n\r\n",
    "nul_in_header_value": f"GET /xff HTTP/1.1\r\n{H}X-A: a\x00b\r\n\r\n",
    "missing_host_http11": "GET /xff HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two_hosts": f"GET /xff HTTP/1.1\r\n{H}Host: other\r\n\r\n",
    "bad_request_line": f"GET  /xff HTTP/1.1\r\n{H}\r\n",
    "bad_version": f"GET /xff HTTP/1.x\r\n{H}\r\n",
    "over_long_head": f"GET /xff HTTP/1.1\r\n{H}X-Long: {'a' * 20000}\r\n\r\n",
    # Request targets and Host (issue 17 part 1, RFC 9112 3.2, RFC 3986 3.2.2).
    "origin_form_without_slash": f"GET admin HTTP/1.1\r\n{H}\r\n",
    "asterisk_with_get": f"GET * HTTP/1.1\r\n{H}\r\n",
    "fragment": f"GET /xff#frag HTTP/1.1\r\n{H}\r\n",
    "userinfo_in_target": f"GET http://user@example/xff HTTP/1.1\r\n{H}\r\n",
    "authority_form_with_get": f"GET example:80 HTTP/1.1\r\n{H}\r\n",
    "host_with_path": "GET /xff HTTP/1.1\r\nHost: a/b?c@d\r\n\r\n",
    "host_list": "GET /xff HTTP/1.1\r\nHost: a, b\r\n\r\n",
    "too_many_headers": f"GET /xff HTTP/1.1\r\n{H}" + "".join(
        f"X-{i}: v\r\n" for i in range(1000)) + "\r\n",
    # No end of head follows: the 400 must come at once, not at `timeout http_request`.
    "bare_cr_then_wait": f"GET /xff HTTP/1.1\r\n{H}X-A: a\rb",
}

# Statuses other than 400, as documented in core/proto/http1.h: a transfer coding other
# than chunked is 501 (RFC 9112 6.1). A head that does not fit in bufsize is 400.
EXPECTED_STATUS = {"te_unknown": 501}

# The head is valid, so it may already be on its way to the server; the body is not.
BODY_CASES = {
    "bad_chunk_size": f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk_size_overflow": (
        f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
        f"10000000000000005\r\nhello\r\n0\r\n\r\n"
    ),
    "chunk_size_negative": f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "chunk_missing_crlf": (
        f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
    ),
}


def response_complete(data):
    """True when data holds a whole response head and its Content-Length body."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", data[:end], re.I)
    return m is not None and len(data) >= end + 4 + int(m.group(1))


def exchange(port, raw, timeout=5 * SLOW):
    """Sends raw bytes and reads until the peer closes, or until 1 s after a complete
    response (then `ended` is "open"), or timeout.
    Returns (status of the first response or None, all bytes, how it ended)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    data = b""
    ended = "timeout"
    try:
        s.sendall(raw.encode("latin-1"))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                ended = "reset"
                break
            except socket.timeout:
                break
            if not chunk:
                ended = "closed"
                break
            data += chunk
            if response_complete(data):
                deadline = min(deadline, time.monotonic() + 1.0)
                ended = "open"
    finally:
        s.close()
    status = None
    if data.startswith(b"HTTP/1."):
        status = int(data.split(b" ", 2)[1])
    return status, data, ended


@pytest.fixture
def proxy(crescent, nginx):
    port = free_port()
    c = crescent(CONFIG.format(bind=addr(port), nginx=addr(nginx.port)), ports=[port])
    c.port = port
    c.nginx = nginx
    return c


def count_status(c, status):
    return sum(1 for d in c.http_logs() if d["status"] == status)


def check_refused(proxy, name, raw, head_error):
    want = EXPECTED_STATUS.get(name, 400)
    before = count_status(proxy, want)
    status, data, ended = exchange(proxy.port, raw)
    assert status == want, f"{name}: expected {want}, got {status} ({ended}): {data[:300]!r}"
    assert ended in ("closed", "reset"), f"{name}: connection left open after the {want}"
    # Exactly one response: the connection is closed after the 400, nothing pipelined
    # behind it is answered.
    assert data.count(b"HTTP/1.") == 1, f"{name}: more than one response: {data[:500]!r}"
    d = proxy.wait_http_log(
        lambda d: d["status"] == want and count_status(proxy, want) > before,
        what=f"a {want} log line for {name}",
    )
    if head_error:
        assert (d["frontend"], d["backend"], d["server"]) == ("public", "public", "<NOSRV>"), d
        assert d["state"].startswith("PR"), d
    # The smuggled request never reached nginx.
    assert not any("/smuggled" in l for l in proxy.nginx.access_lines()), name


@pytest.mark.parametrize("name", sorted(HEAD_CASES))
def test_malformed_head_400(proxy, name):
    check_refused(proxy, name, HEAD_CASES[name], head_error=True)
    status, _, _ = exchange(proxy.port, f"GET /xff HTTP/1.1\r\n{H}Connection: close\r\n\r\n")
    assert status == 200, "the proxy stopped serving"


@pytest.mark.parametrize("name", sorted(BODY_CASES))
def test_malformed_body_400(proxy, name):
    check_refused(proxy, name, BODY_CASES[name], head_error=False)
    status, _, _ = exchange(proxy.port, f"GET /xff HTTP/1.1\r\n{H}Connection: close\r\n\r\n")
    assert status == 200, "the proxy stopped serving"


def test_well_formed_controls_pass(proxy):
    """The same shapes, well formed, are served: the refusals above are not blanket."""
    ok = [
        f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        f"5\r\nhello\r\n0\r\n\r\n",
        f"POST /xff HTTP/1.1\r\n{H}Content-Length: 5\r\nConnection: close\r\n\r\nhello",
        f"GET /xff HTTP/1.1\r\n{H}X-Long: {'a' * 8000}\r\nConnection: close\r\n\r\n",
        f"GET /xff HTTP/1.1\r\n{H}X-Tab:\tvalue\t\r\nConnection: close\r\n\r\n",
        f"POST /xff HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        f"5;ext=1\r\nhello\r\n0\r\nTrailer-A: x\r\n\r\n",
    ]
    for raw in ok:
        status, data, ended = exchange(proxy.port, raw)
        assert status == 200, f"{raw[:120]!r} -> {data[:300]!r}"
        assert ended == "closed", f"{raw[:120]!r}: Connection: close not honoured ({ended})"


def test_bare_cr_is_answered_before_the_request_timeout(crescent, nginx):
    """A bare CR gets its 400 as soon as the byte after it arrives: with a request timeout
    far beyond the test's deadline, an answer can only come from the parser."""
    port = free_port()
    cfg = CONFIG.format(bind=addr(port), nginx=addr(nginx.port)).replace(
        'http_request = "5s"', 'http_request = "600s"').replace('client = "5s"', 'client = "600s"')
    crescent(cfg, ports=[port])
    status, data, ended = exchange(port, f"GET /xff HTTP/1.1\r\n{H}X-A: a\rb", timeout=10 * SLOW)
    assert (status, ended) == (400, "closed"), data[:300]


def test_max_headers_is_configurable(crescent, nginx):
    """global { tune = { max_headers = N } }: N field lines pass, N + 1 get 400."""
    port = free_port()
    cfg = CONFIG.format(bind=addr(port), nginx=addr(nginx.port)).replace(
        'bufsize = "16k"', 'bufsize = "16k", tune = {{ max_headers = 5 }}'.replace("{{", "{").replace("}}", "}"))
    crescent(cfg, ports=[port])
    fields = lambda n: "".join(f"X-{i}: v\r\n" for i in range(n))
    status, _, _ = exchange(port, f"GET /xff HTTP/1.1\r\n{H}{fields(3)}Connection: close\r\n\r\n")
    assert status == 200
    status, _, _ = exchange(port, f"GET /xff HTTP/1.1\r\n{H}{fields(4)}Connection: close\r\n\r\n")
    assert status == 400


def test_absolute_form_target_replaces_host(crescent, nginx):
    """RFC 9112 3.2.2: with `GET http://evil.example/admin` and `Host: good.example`, a
    Host ACL and the server both see evil.example, so an ACL that allows
    good.example cannot be walked around."""
    port = free_port()
    cfg = f"""
global {{ threads = 1 }}
defaults {{ mode = "http", timeout = {{ connect = "2s", client = "5s", server = "5s" }} }}
frontend "public" {{
  bind {{ "{addr(port)}" }},
  use_backend {{ "web", when = acl.hdr("host"):eq("good.example") }},
  default_backend = "refused",
}}
backend "web" {{ server "nginx" {{ "{addr(nginx.port)}" }} }}
backend "refused" {{ }}
"""
    crescent(cfg, ports=[port])
    status, data, _ = exchange(
        port, "GET http://good.example/host HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert status == 200, data[:300]
    assert b"http_host=good.example host=good.example" in data, data[:300]
    # The walk-around: the ACL sees the target's host, not the Host field's.
    status, data, _ = exchange(
        port, "GET http://evil.example/host HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n")
    assert status == 503, data[:300]


def test_identical_duplicate_content_length_accepted(proxy):
    """RFC 9112 6.3 allows folding identical Content-Length values into one."""
    raw = (f"POST /xff HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 5\r\n"
           f"Connection: close\r\n\r\nhello")
    status, data, _ = exchange(proxy.port, raw)
    assert status in (200, 400), data[:300]
