"""Large bodies that crescent makes itself (issue 17 part 7): a hook's txn:reply and a
Lua service's applet:send are sent from the Lua string itself, with no copy, so the
string must stay alive until its last byte has left, across the end of the exchange and
a reload that retires its generation. A client that reads a big reply slowly is not cut
by the keep-alive timeout: that wait starts once the response is out. Peak memory is
measured by `scripts/bench` (case bigreply), not here."""

import re
import socket

from conftest import SLOW, addr, free_port, read_response, run_crescent, wait_until

MB = 1 << 20
# 32 MiB: more than loopback's socket buffers (tcp_wmem + tcp_rmem at their largest)
# can take, so most of it is still queued in crescent when the exchange ends.
BIG = 32 * MB
PIECE = b"0123456789abcdef"

CONFIG = """
global {{ threads = 1, runtime = {{ socket = "{sock}" }} }}
defaults {{
  mode = "http",
  timeout = {{ connect = "5s", client = "30s", server = "30s", http_keep_alive = "{ka}" }},
}}
frontend "web" {{
  bind {{ "{bind}" }},
  http_request = function(txn)
    local path = txn.req.path
    if path == "/big" then
      return txn:reply(200, string.rep("{piece}", {count}), {{ ["x-gen"] = "{tag}" }})
    elseif path == "/small" then
      return txn:reply(200, "small {tag}\\n")
    end
  end,
  default_backend = "svc",
}}
backend "svc" {{
  service = function(applet)
    applet:set_status(200)
    applet:add_header("x-gen", "{tag}")
    applet:start_response()
    applet:send(string.rep("{piece}", {count}))
  end,
}}
"""


def config(tmp_path, port, tag="v1", ka="10s"):
    return CONFIG.format(
        sock=tmp_path / "api.sock",
        bind=addr(port),
        ka=ka,
        tag=tag,
        piece=PIECE.decode(),
        count=BIG // len(PIECE),
    )


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30 * SLOW)
    # A small receive window: the reply waits in crescent, not in this socket.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return s


def get(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: web\r\n\r\n".encode())


def test_reply_and_service_bodies_arrive_whole(crescent, tmp_path):
    port = free_port()
    crescent(config(tmp_path, port), ports=[port])
    with connect(port) as s:
        for path in ("/big", "/svc", "/small", "/big"):  # one keep-alive connection
            get(s, path)
            status, headers, body = read_response(s)
            assert status == 200, headers
            if path == "/small":
                assert body == b"small v1\n"
                continue
            assert headers["x-gen"] == "v1"
            assert len(body) == BIG
            assert body == PIECE * (BIG // len(PIECE)), "reply bytes differ"


def test_slow_reader_of_a_big_reply_is_not_cut_by_keep_alive(crescent, tmp_path):
    """The exchange ends when the last byte is queued; the connection then waits for the
    next request with 32 MiB still to send. With http_keep_alive = 200ms and a client that
    takes well over a second to read (2048 reads 1 ms apart at the very least), the
    keep-alive timeout would cut the reply if it ran while the reply leaves."""
    port = free_port()
    crescent(config(tmp_path, port, ka="200ms"), ports=[port])
    with connect(port) as s:
        get(s, "/big")
        status, _, body = read_response(s, pace=0.001)
        assert status == 200 and len(body) == BIG
        assert body == PIECE * (BIG // len(PIECE))
        get(s, "/small")  # the connection is still kept
        assert read_response(s)[2] == b"small v1\n"


def test_reload_while_a_big_reply_leaves(crescent, tmp_path):
    """The reply's Lua string belongs to generation 1's Lua state. An idle keep-alive
    connection moves to generation 2 at the reload, which leaves generation 1 with no
    session while 32 MiB of its string are still queued: the state must live until they
    are out (then the generation is freed), and the bytes arrive intact."""
    port = free_port()
    path = tmp_path / "crescent.lua"
    path.write_text(config(tmp_path, port))
    c = crescent(path, ports=[port])
    sock = str(tmp_path / "api.sock")
    with connect(port) as s:
        get(s, "/big")
        s.settimeout(30 * SLOW)
        got = b""
        while b"\r\n\r\n" not in got or len(got) < MB:
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            got += chunk
        head, rest = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and b"x-gen: v1" in head.lower(), head

        path.write_text(config(tmp_path, port, tag="v2"))
        r = run_crescent(["reload", "-s", sock])
        assert r.returncode == 0 and r.stdout.startswith("Success=1"), r.stdout + r.stderr

        def moved():
            out = run_crescent(["ctl", "-s", sock, "show sess"]).stdout
            return re.search(r"gen=2 fe=web .*state=idle", out) is not None

        wait_until(moved, 10 * SLOW, "the idle connection on generation 2")
        # Generation 1 has no session now, yet its string is still being sent.
        assert "generation 1 freed" not in c.stderr()

        body = rest
        while len(body) < BIG:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {len(body)} of {BIG} bytes"
            body += chunk
        assert len(body) == BIG
        assert body == PIECE * (BIG // len(PIECE)), "reply bytes differ"
        wait_until(lambda: "generation 1 freed" in c.stderr(), 10 * SLOW,
                   "generation 1 freed once its reply left")

        get(s, "/small")  # the next request runs on generation 2
        assert read_response(s)[2] == b"small v2\n"
