"""The runtime API socket, `crescent ctl` / `crescent reload`, and `global { watch = true }`
(docs/reload.md, "The runtime API" and "Reloading").

The socket is driven both raw (the line protocol: a command and "\\n", a reply ending with
an empty line, several commands per connection, EOF ends it) and through `crescent ctl`
(its output and exit status). Server commands are checked by their effect on traffic:
a backend balances between two servers that answer with their own name, so where requests
go after `set server ... state drain` or `weight 0` is visible in the answers.
"""

import os
import re
import socket
import stat
import subprocess
import time

import pytest

from conftest import SLOW, CRESCENT_BIN, Crescent, free_port, wait_until

CONFIG = """
global {{
  threads = 2,
  runtime = {{ socket = "{sock}", mode = "{mode}", expose_fd_listeners = {expose} }},
}}
defaults {{
  timeout = {{ connect = "2s", client = "30s", server = "30s", http_keep_alive = "30s" }},
}}
frontend "web" {{
  bind {{ "127.0.0.1:{port}" }},
  default_backend = "app",
}}
backend "app" {{
  server "s1" {{ "127.0.0.1:{s1}" }},
  server "s2" {{ "127.0.0.1:{s2}" }},
}}
listen "s1" {{
  bind {{ "127.0.0.1:{s1}" }},
  log = false,
  service = function(applet) applet:send("s1\\n") end,
}}
listen "s2" {{
  bind {{ "127.0.0.1:{s2}" }},
  log = false,
  service = function(applet) applet:send("s2\\n") end,
}}
"""

COMMANDS = [
    "help", "reload", "show info", "show generations", "show sess", "show servers state",
    "show stat", "show errors", "clear counters",
    "set server", "enable server", "disable server",
]


# ---------------------------------------------------------------------------------------
# Helpers


class Api:
    """A crescent started with CONFIG; .sock the runtime socket, .port the frontend."""

    def __init__(self, crescent, sockdir, mode="0600", expose=True):
        self.sock = sockdir / "rt.sock"
        self.port, s1, s2 = free_port(), free_port(), free_port()
        self.proc = crescent(
            CONFIG.format(sock=self.sock, mode=mode, expose="true" if expose else "false",
                          port=self.port, s1=s1, s2=s2),
            ports=[self.port, s1, s2],
        )
        wait_until(self.sock.exists, 5 * SLOW, "the runtime socket")


@pytest.fixture
def api(crescent, sockdir):
    return Api(crescent, sockdir)


def parse_replies(data):
    """Splits what the socket sent into replies (each without its ending empty line)."""
    text = data.decode()
    assert text.endswith("\n") or text == "", f"the output does not end a line: {text!r}"
    replies, lines = [], []
    for line in text.split("\n")[:-1]:
        if line == "":
            replies.append("\n".join(lines))
            lines = []
        else:
            lines.append(line)
    assert not lines, f"a reply without its ending empty line: {lines}"
    return replies


def session(path, payload, timeout=10 * SLOW):
    """Sends `payload` (bytes) on one connection, half-closes, reads until the server
    closes. Returns the list of replies."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return parse_replies(recv_until_eof(s))


def recv_until_eof(s, reset_ok=False):
    """Reads until the peer closes. With reset_ok, a reset also ends it (a UNIX socket
    closed with our bytes still unread reports ECONNRESET after the data it sent)."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            if not reset_ok:
                raise
            return data
        if not chunk:
            return data
        data += chunk


def command(path, line):
    replies = session(path, line.encode() + b"\n")
    assert len(replies) == 1, replies
    return replies[0]


def show_info(path):
    return dict(l.split(": ", 1) for l in command(path, "show info").splitlines())


def servers_state(path, backend="app"):
    """`show servers state BACKEND` as {server: {column: value}}."""
    lines = command(path, f"show servers state {backend}").splitlines()
    assert lines and lines[0].startswith("# "), lines
    columns = lines[0][2:].split()
    out = {}
    for line in lines[1:]:
        row = dict(zip(columns, line.split()))
        out[row["server"]] = row
    return out


def show_stat(path):
    """`show stat` as {(pxname, svname): {field: value}}, its CSV shape checked."""
    import csv
    import io

    text = command(path, "show stat")
    assert text.startswith("# pxname,svname,"), text
    rows = list(csv.reader(io.StringIO(text[2:])))
    header, body = rows[0], rows[1:]
    assert all(len(r) == len(header) for r in body), text
    return {(r[0], r[1]): dict(zip(header, r)) for r in body}


def ctl(*args, stdin=b"", timeout=30 * SLOW):
    r = subprocess.run([CRESCENT_BIN, *map(str, args)], input=stdin, capture_output=True,
                       timeout=timeout)
    r.out, r.err = r.stdout.decode(), r.stderr.decode()
    return r


def get(port, timeout=5 * SLOW):
    """GET / on a new connection; returns the body (asserts a 200)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = recv_until_eof(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return body.decode()


def spread(port, n=20):
    """Which server answered each of n requests: {"s1": count, "s2": count}."""
    counts = {}
    for _ in range(n):
        who = get(port).strip()
        counts[who] = counts.get(who, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------
# The socket and the line protocol


@pytest.mark.parametrize("mode", ["0600", "0660", "0644"])
def test_socket_mode_follows_config(mode, crescent, sockdir):
    a = Api(crescent, sockdir, mode=mode)
    st = os.stat(a.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == int(mode, 8), oct(st.st_mode)
    # No temporary name left next to it.
    assert sorted(p.name for p in sockdir.iterdir()) == ["rt.sock"]


def test_several_commands_on_one_connection(api):
    """Replies come in order, each ending with an empty line (an empty reply is just the
    empty line); an error does not end the connection; EOF does, after the last reply."""
    replies = session(api.sock, b"show info\nhelp\nset server app/s1 weight 3\nbogus\n"
                                b"show servers state app\nshow generations")
    assert len(replies) == 6, replies
    assert re.search(rf"^Pid: {api.proc.pid}$", replies[0], re.M), replies[0]
    assert replies[1].startswith("The following commands are valid"), replies[1]
    assert replies[2] == ""
    assert replies[3].startswith('error: unknown command "bogus"'), replies[3]
    assert re.search(r"^app s1 \S+ UP ready 3 ", replies[4], re.M), replies[4]
    assert re.match(r"# id age_s sessions state\n1 \d+\.\d+ \d+ current$", replies[5]), replies[5]


def test_replies_come_without_waiting_for_eof(api):
    """Interactive use: each reply arrives while the connection stays open."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5 * SLOW)
        s.connect(str(api.sock))
        for _ in range(3):
            s.sendall(b"show info\n")
            data = b""
            while not data.endswith(b"\n\n"):
                chunk = s.recv(65536)
                assert chunk, "closed before the reply ended"
                data += chunk
            assert f"Pid: {api.proc.pid}\n".encode() in data


def test_help_lists_every_command(api):
    reply = command(api.sock, "help")
    for c in COMMANDS:
        assert re.search(rf"^\s+{re.escape(c)}\b", reply, re.M), f"{c!r} missing from:\n{reply}"
    r = ctl("ctl", "-s", api.sock, "help")
    assert r.returncode == 0 and r.out.strip() == reply.strip(), (r.out, r.err)


def test_unknown_command_is_an_error(api):
    reply = command(api.sock, "frobnicate now")
    assert reply == 'error: unknown command "frobnicate now" (try "help")', reply
    r = ctl("ctl", "-s", api.sock, "frobnicate", "now")
    assert r.returncode == 1, (r.out, r.err)
    assert (r.out + r.err).startswith("error: unknown command"), (r.out, r.err)


def test_long_line_refused_and_closed(api):
    """A 65536-byte line is still a command (an unknown one); one byte more is refused with
    an error, the connection closes, and the commands after it are not run."""
    at_limit = b"x" * 65536
    replies = session(api.sock, at_limit + b"\nshow generations\n")
    assert len(replies) == 2 and replies[0].startswith("error: unknown command"), replies[:1]
    replies = session(api.sock, b"show generations\n" + b"y" * 70000 + b"\nshow info\n")
    assert len(replies) == 2, replies
    assert replies[0].startswith("# id")
    assert replies[1].startswith("error: command line too long"), replies[1]
    # The process is fine, and so is the next connection.
    assert show_info(api.sock)["Pid"] == str(api.proc.pid)
    # Without a newline at all: refused once past the limit, without waiting for EOF.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5 * SLOW)
        s.connect(str(api.sock))
        try:
            s.sendall(b"z" * 200000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all of it was sent
        replies = parse_replies(recv_until_eof(s, reset_ok=True))
        assert len(replies) == 1 and replies[0].startswith("error: command line too long"), replies


@pytest.mark.parametrize("line", [b"show\x01 info", b"show info\x7f", b"\x1b[Ahelp"])
def test_control_bytes_are_malformed(api, line):
    replies = session(api.sock, line + b"\nshow generations\n")
    assert replies[0] == "error: malformed command line", replies
    assert replies[1].startswith("# id"), replies


def test_crlf_and_blank_lines(api):
    """A "\\r\\n" line end is accepted (socat, telnet); an empty line is not a command."""
    replies = session(api.sock, b"show generations\r\n\n\nshow info\r\n")
    assert len(replies) == 2, replies
    assert replies[0].startswith("# id") and replies[1].startswith("Name: crescent")


def test_getsocks_refused_without_expose_fd_listeners(crescent, sockdir, tmp_path):
    """`_getsocks` is an error when expose_fd_listeners is false, and a binary upgrade from
    that socket fails (exit 1, saying why) while the old process keeps serving."""
    a = Api(crescent, sockdir, expose=False)
    reply = command(a.sock, "_getsocks")
    assert reply.startswith("error: _getsocks:") and "expose_fd_listeners" in reply, reply
    assert get(a.port).strip() in ("s1", "s2")

    new = Crescent(a.proc.config, tmp_path, args=["-x", a.sock, "-sf", a.proc.pid],
                   name="crescent-upgrade")
    try:
        rc = new.proc.wait(timeout=10 * SLOW)
    finally:
        new.stop()
    assert rc == 1, new.describe()
    assert "expose_fd_listeners" in new.stderr(), new.describe()
    assert a.proc.running()
    assert show_info(a.sock)["Pid"] == str(a.proc.pid)
    assert get(a.port).strip() in ("s1", "s2")


def test_getsocks_with_expose_fd_listeners_passes_sockets(api):
    """With expose_fd_listeners the reply names every listening socket (the fds travel as
    SCM_RIGHTS ancillary data, checked here by receiving them)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5 * SLOW)
        s.connect(str(api.sock))
        s.sendall(b"_getsocks\n")
        s.shutdown(socket.SHUT_WR)
        data, fds = b"", []
        while True:
            msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += list(memoryview(payload).cast("i"))
            if not msg:
                break
            data += msg
    try:
        text = data.decode()
        assert text.startswith("_getsocks v1 "), text
        keys = re.findall(r"^key (\S+)$", text, re.M)
        assert f"127.0.0.1:{api.port}" in keys, text
        assert len(keys) == 3 and len(fds) == 3, (text, fds)
        ports = set()
        for fd in fds:
            with socket.socket(fileno=os.dup(fd)) as ls:
                assert ls.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
                ports.add(ls.getsockname()[1])
        assert api.port in ports
    finally:
        for fd in fds:
            os.close(fd)


# ---------------------------------------------------------------------------------------
# Servers


def test_set_server_state_drain_maint_ready_moves_traffic(api):
    """drain and maint show in `show servers state` and take s1 out of the rotation;
    ready/enable bring it back. ctl prints nothing and exits 0 on success."""
    assert set(spread(api.port)) == {"s1", "s2"}

    r = ctl("ctl", "-s", api.sock, "set", "server", "app/s1", "state", "drain")
    assert r.returncode == 0 and r.out.strip() == "", (r.out, r.err)
    assert servers_state(api.sock)["s1"]["admin"] == "drain"
    assert servers_state(api.sock)["s2"]["admin"] == "ready"
    assert spread(api.port) == {"s2": 20}

    assert command(api.sock, "set server app/s1 state ready") == ""
    assert servers_state(api.sock)["s1"]["admin"] == "ready"
    assert set(spread(api.port)) == {"s1", "s2"}

    assert command(api.sock, "disable server app/s1") == ""
    assert servers_state(api.sock)["s1"]["admin"] == "maint"
    assert spread(api.port) == {"s2": 20}
    assert command(api.sock, "enable server app/s1") == ""
    assert servers_state(api.sock)["s1"]["admin"] == "ready"
    assert set(spread(api.port)) == {"s1", "s2"}

    # The logs name the server and the change.
    wait_until(lambda: "server app/s1 state ready -> drain (runtime API)" in api.proc.stderr(),
               5 * SLOW, "the admin state log line")


def test_admin_state_is_kept_across_a_reload(api):
    assert command(api.sock, "set server app/s2 state maint") == ""
    reply = command(api.sock, "reload")
    assert reply == "Success=1\ngeneration 2", reply
    assert servers_state(api.sock)["s2"]["admin"] == "maint"
    assert spread(api.port, 10) == {"s1": 10}


def test_set_server_weight(api):
    assert command(api.sock, "set server app/s1 weight 0") == ""
    assert servers_state(api.sock)["s1"]["weight"] == "0"
    assert spread(api.port) == {"s2": 20}
    assert command(api.sock, "set server app/s1 weight 3") == ""
    assert servers_state(api.sock)["s1"]["weight"] == "3"
    counts = spread(api.port, 40)
    assert counts.get("s1", 0) > counts.get("s2", 0) > 0, counts
    assert command(api.sock, "set server app/s1 maxconn 7") == ""
    assert servers_state(api.sock)["s1"]["maxconn"] == "7"


def test_set_server_weight_percent_and_maxconn_are_logged(crescent, sockdir):
    sock = sockdir / "rt.sock"
    port, s1 = free_port(), free_port()
    c = crescent(f"""
global {{ runtime = {{ socket = "{sock}" }} }}
frontend "web" {{ bind {{ "127.0.0.1:{port}" }}, default_backend = "app" }}
backend "app" {{ server "s1" {{ "127.0.0.1:{s1}", weight = 10 }} }}
""", ports=[port])
    wait_until(sock.exists, 5 * SLOW, "the runtime socket")
    assert command(sock, "set server app/s1 weight 50%") == ""
    assert servers_state(sock)["s1"]["weight"] == "5"  # of the configured 10
    assert command(sock, "set server app/s1 weight 250%") == ""
    assert servers_state(sock)["s1"]["weight"] == "25"
    assert command(sock, "set server app/s1 maxconn 7") == ""
    wait_until(lambda: 'backend "app": server "s1": weight 10 -> 5 (runtime API: weight 50%)'
               in c.stderr() and 'server "s1": weight 5 -> 25' in c.stderr()
               and 'backend "app": server "s1": maxconn 0 -> 7 (runtime API)' in c.stderr(),
               5 * SLOW, "a log line per change")
    assert command(sock, "set server app/s1 weight 5x%").startswith("error: weight")


def test_set_server_addr_moves_new_connections(api):
    """s1's address becomes s2's: every new request is answered by s2's service, and the
    change is logged; `show servers state` shows the new address."""
    s2_port = int(servers_state(api.sock)["s2"]["address"].rsplit(":", 1)[1])
    assert spread(api.port, 10).get("s1", 0) > 0
    assert command(api.sock, f"set server app/s1 addr 127.0.0.1 port {s2_port}") == ""
    assert spread(api.port, 10) == {"s2": 10}
    assert servers_state(api.sock)["s1"]["address"] == f"127.0.0.1:{s2_port}"
    wait_until(lambda: f'backend "app": server "s1": addr ' in api.proc.stderr()
               and f"-> 127.0.0.1:{s2_port} (runtime API)" in api.proc.stderr(),
               5 * SLOW, "the addr change logged")
    for bad in ("set server app/s1 addr nohost", "set server app/s1 addr 127.0.0.1 port x",
                "set server app/s1 addr 127.0.0.1 prot 80"):
        assert command(api.sock, bad).startswith("error: "), bad
    # A reload brings the configured address back.
    assert command(api.sock, "reload").startswith("Success=1")
    assert spread(api.port, 10).get("s1", 0) > 0


def test_set_server_addr_moves_the_health_check(crescent, sockdir):
    """A server checked DOWN at a dead address comes UP once `addr` points it at a live one:
    the next check goes to the new address."""
    sock, port, live, dead = sockdir / "rt.sock", free_port(), free_port(), free_port()
    crescent(f"""
global {{ runtime = {{ socket = "{sock}" }} }}
frontend "web" {{ bind {{ "127.0.0.1:{port}" }}, default_backend = "app" }}
backend "app" {{
  check = {{ inter = "100ms", rise = 1, fall = 1, timeout = "1s" }},
  server "s1" {{ "127.0.0.1:{dead}", check = true }},
}}
listen "live" {{ bind {{ "127.0.0.1:{live}" }}, service = function(a) a:send("ok") end }}
""", ports=[port, live])
    wait_until(sock.exists, 5 * SLOW, "the runtime socket")
    wait_until(lambda: servers_state(sock)["s1"]["state"] == "DOWN", 10 * SLOW, "s1 DOWN")
    assert command(sock, f"set server app/s1 addr 127.0.0.1 port {live}") == ""
    wait_until(lambda: servers_state(sock)["s1"]["state"] == "UP", 10 * SLOW,
               "s1 UP at its new address")


def test_clear_counters(api):
    for _ in range(4):
        get(api.port)
    before = show_stat(api.sock)
    assert int(before[("app", "BACKEND")]["stot"]) >= 4
    assert command(api.sock, "clear counters") == ""
    kept = show_stat(api.sock)  # totals are kept, max values restart
    assert kept[("app", "BACKEND")]["stot"] == before[("app", "BACKEND")]["stot"]
    assert kept[("app", "BACKEND")]["qmax"] == "0"
    assert command(api.sock, "clear counters all") == ""
    zeroed = show_stat(api.sock)
    for key in (("app", "BACKEND"), ("app", "s1"), ("app", "s2"), ("web", "FRONTEND")):
        assert zeroed[key]["stot"] == "0", (key, zeroed[key])
    assert zeroed[("web", "FRONTEND")]["req_tot"] == "0"
    get(api.port)
    assert show_stat(api.sock)[("app", "BACKEND")]["stot"] == "1"
    wait_until(lambda: "runtime API: clear counters all" in api.proc.stderr(), 5 * SLOW,
               "the clear logged")
    assert command(api.sock, "clear counters some").startswith("error: usage")


SMUGGLING = (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


def refused(port, raw, status=b"400"):
    """Sends `raw` on a new connection; asserts crescent answers `status` and closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
        s.sendall(raw)
        assert recv_until_eof(s, reset_ok=True).startswith(b"HTTP/1.1 " + status)


def test_show_errors_after_a_smuggling_attempt(api):
    refused(api.port, SMUGGLING)
    refused(api.port, b"GET / HTTP/1.1\r\nHost: t\nX: y\r\n\r\n")  # then a bare LF
    out = command(api.sock, "show errors frontend")
    lines = out.splitlines()
    assert lines[0].startswith("Total events captured on [") and lines[0].endswith(": 2"), out
    # One capture per frontend: the latest (the bare LF) at its byte.
    assert sum(1 for l in lines if "frontend web: invalid request" in l) == 1, out
    assert "status 400: bare LF in head, len 32, error at position 23" in out, out
    assert "  00000  GET / HTTP/1.1\\r\\n" in lines, out
    assert "  00016  Host: t\\n" in lines, out
    assert command(api.sock, "show errors backend").count("invalid") == 0
    assert command(api.sock, "show errors nonsense").startswith("error: ")


def test_show_errors_names_the_smuggling_field(api):
    attempt = SMUGGLING
    refused(api.port, attempt)
    out = command(api.sock, "show errors frontend web")
    at = attempt.index(b"Transfer-Encoding")
    assert (f"status 400: both Content-Length and Transfer-Encoding, len {attempt.index(b'0')}, "
            f"error at position {at}") in out, out
    assert "  00045  Transfer-Encoding: chunked\\r\\n" in out.splitlines(), out


def test_show_errors_captures_an_invalid_response(crescent, sockdir, tcp_server):
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBad Name: x\r\n\r\nok"

    def server(conn):
        conn.recv(65536)
        conn.sendall(bad)

    srv = tcp_server(server)
    sock, port = sockdir / "rt.sock", free_port()
    crescent(f"""
global {{ runtime = {{ socket = "{sock}" }} }}
frontend "web" {{ bind {{ "127.0.0.1:{port}" }}, default_backend = "app" }}
backend "app" {{ retries = 0, server "s1" {{ "127.0.0.1:{srv.port}" }} }}
""", ports=[port])
    wait_until(sock.exists, 5 * SLOW, "the runtime socket")
    refused(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", b"502")
    out = command(sock, "show errors backend app")
    assert "backend app: invalid response" in out, out
    assert f"server s1, event #" in out and f"src 127.0.0.1:{srv.port}" in out, out
    at = bad.index(b" Name")
    assert f"status 502: whitespace before colon, len {len(bad)}, error at position {at}" \
        in out, out
    assert command(sock, "show errors frontend").count("invalid") == 0


@pytest.mark.parametrize("line, message", [
    ("set server app/s1 weight 257", "weight"),
    ("set server app/s1 weight -1", "weight"),
    ("set server app/s1 weight abc", "weight"),
    ("set server app/s1 weight", "weight"),
    ("set server app/s1 maxconn -5", "maxconn"),
    ("set server app/s1 maxconn 1x", "maxconn"),
    ("set server app/s1 state sleeping", "state"),
    ("set server app/s1 colour blue", ""),
    ("set server app/nope state drain", '"nope"'),
    ("set server nope/s1 state drain", '"nope"'),
    ("set server app state drain", ""),
    ("set server /s1 state drain", ""),
    ("enable server app/nope", '"nope"'),
    ("show servers state nope", '"nope"'),
])
def test_bad_server_commands_are_refused(api, line, message):
    """Each gets one "error: " line naming what is wrong, ctl exits 1, nothing changes."""
    before = servers_state(api.sock)
    reply = command(api.sock, line)
    assert reply.startswith("error: ") and "\n" not in reply, reply
    assert message in reply, reply
    r = ctl("ctl", "-s", api.sock, *line.split())
    assert r.returncode == 1, (r.out, r.err)
    assert (r.out + r.err).strip() == reply, (r.out, r.err)
    after = servers_state(api.sock)
    for s in ("s1", "s2"):
        for col in ("admin", "weight", "maxconn"):
            assert after[s][col] == before[s][col], (s, col, before, after)


# ---------------------------------------------------------------------------------------
# show sess, show info, show generations, reload


def test_show_sess_lists_an_open_connection(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=5 * SLOW) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        local = s.getsockname()[1]
        mine = re.compile(
            rf"^worker=\d+ proto=http gen=1 fe=web src=127\.0\.0\.1:{local} .*$", re.M)
        line = wait_until(lambda: mine.search(command(api.sock, "show sess")), 5 * SLOW,
                          "the connection in show sess").group(0)
        assert re.search(r" age=\d+m?s ", line) and " state=" in line, line
        # One line per client session: ours, and the proxy's own pooled connection to the
        # server, which is a listen of the same process.
        sess = command(api.sock, "show sess").splitlines()
        assert int(show_info(api.sock)["CurrConns"]) == len(sess), sess
        assert sum(" fe=web " in l for l in sess) == 1, sess
    wait_until(lambda: not mine.search(command(api.sock, "show sess")), 5 * SLOW,
               "the closed connection to leave show sess")
    sess = command(api.sock, "show sess").splitlines()
    assert int(show_info(api.sock)["CurrConns"]) == len(sess), sess


def test_show_stat_csv(api):
    """`show stat`: HAProxy's CSV shape (a `# ` header, one row per frontend, server and
    backend, the same number of fields everywhere), with values that follow the traffic
    and the runtime state."""
    def stat():
        return show_stat(api.sock)

    before = stat()
    assert set(before) >= {("web", "FRONTEND"), ("app", "s1"), ("app", "s2"),
                           ("app", "BACKEND")}, before.keys()
    fe, be = before[("web", "FRONTEND")], before[("app", "BACKEND")]
    assert (fe["type"], before[("app", "s1")]["type"], be["type"]) == ("0", "2", "1")
    assert fe["status"] == "OPEN" and fe["pid"] == str(api.proc.pid)
    assert be["status"] == "UP" and be["act"] == "2" and be["weight"] == "2", be

    for _ in range(4):
        get(api.port)
    after = stat()
    assert int(after[("web", "FRONTEND")]["stot"]) >= int(fe["stot"]) + 4
    assert int(after[("web", "FRONTEND")]["req_tot"]) >= int(fe["req_tot"]) + 4
    served = sum(int(after[("app", s)]["stot"]) - int(before[("app", s)]["stot"])
                 for s in ("s1", "s2"))
    assert served == 4, after
    assert int(after[("app", "BACKEND")]["stot"]) == int(be["stot"]) + 4

    assert command(api.sock, "set server app/s1 state drain") == ""
    drained = stat()
    assert drained[("app", "s1")]["status"] == "DRAIN", drained[("app", "s1")]
    assert drained[("app", "BACKEND")]["act"] == "1", drained[("app", "BACKEND")]
    assert command(api.sock, "show stat extra").startswith("error: unknown command")


def test_show_info_and_reload(api):
    info = show_info(api.sock)
    for field in ("Name", "Pid", "Uptime_sec", "Threads", "Generation", "Generations",
                  "Reloads", "ReloadFailures", "CurrConns", "CumConns", "Maxconn",
                  "HardStoppedSessions", "Stopping"):
        assert field in info, info
    assert info["Name"] == "crescent" and info["Pid"] == str(api.proc.pid)
    assert info["Threads"] == "2" and info["Generation"] == "1" and info["Reloads"] == "0"
    assert info["Stopping"] == "0"
    cum = int(info["CumConns"])
    get(api.port)
    assert int(show_info(api.sock)["CumConns"]) >= cum + 1

    r = ctl("reload", "-s", api.sock)
    assert r.returncode == 0 and r.out == "Success=1\ngeneration 2\n", (r.out, r.err)
    r = ctl("ctl", "-s", api.sock, "reload")
    assert r.returncode == 0 and r.out == "Success=1\ngeneration 3\n", (r.out, r.err)
    info = show_info(api.sock)
    assert info["Generation"] == "3" and info["Reloads"] == "2", info
    gens = command(api.sock, "show generations").splitlines()
    assert gens[0] == "# id age_s sessions state"
    # The current generation first; an old one is listed (0 sessions) until every worker
    # has let go of it.
    assert gens[1].startswith("3 ") and gens[1].endswith(" current"), gens
    assert all(g.split()[3] in ("old", "closing") for g in gens[2:]), gens
    assert get(api.port).strip() in ("s1", "s2")


def test_reload_failure_reply_and_ctl_exit_1(api):
    """Success=0 with file:line, ctl/reload exit 1, ReloadFailures counts it."""
    cfg = api.proc.config
    good = cfg.read_text()
    cfg.write_text(good + "\nbackend \"x\" { server \"y\" { \"127.0.0.1:99999\" } }\n")
    r = ctl("reload", "-s", api.sock)
    assert r.returncode == 1, (r.out, r.err)
    text = r.out + r.err
    assert text.startswith("Success=0\n") and f"{cfg.name}:" in text and "99999" in text, text
    info = show_info(api.sock)
    assert info["Generation"] == "1" and info["ReloadFailures"] == "1", info
    cfg.write_text(good)
    assert command(api.sock, "reload") == "Success=1\ngeneration 2"


def test_ctl_reads_commands_from_stdin(api):
    r = ctl("ctl", "-s", api.sock, stdin=b"show generations\nshow info\n")
    assert r.returncode == 0, (r.out, r.err)
    assert r.out.startswith("# id age_s sessions state\n") and f"Pid: {api.proc.pid}" in r.out


def test_ctl_cannot_connect_exits_2(sockdir):
    missing = sockdir / "missing.sock"
    r = ctl("ctl", "-s", missing, "show", "info")
    assert r.returncode == 2, (r.out, r.err)
    assert str(missing) in r.err and "No such file or directory" in r.err, r.err
    r = ctl("reload", "-s", missing)
    assert r.returncode == 2 and str(missing) in r.err, (r.out, r.err)
    # A socket file nobody listens on.
    dead = sockdir / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()
    r = ctl("ctl", "-s", dead, "show", "info")
    assert r.returncode == 2 and str(dead) in r.err and "refused" in r.err, (r.out, r.err)
    # Usage errors.
    assert ctl("ctl", "show", "info").returncode == 2
    assert ctl("ctl", "-s").returncode == 2


# ---------------------------------------------------------------------------------------
# watch = true

WATCH_CONFIG = """
local mod = require "{module}"
local BODY = "{body}"
global {{ threads = 2, watch = true, runtime = {{ socket = "{sock}" }} }}
listen "web" {{
  bind {{ "127.0.0.1:{port}" }},
  service = function(applet) applet:send(BODY .. " " .. mod.word .. "\\n") end,
}}
"""


class Watched:
    def __init__(self, crescent, tmp_path, sockdir):
        self.dir = tmp_path / "conf"
        self.dir.mkdir()
        self.port = free_port()
        self.sock = sockdir / "rt.sock"
        self.module = self.dir / "wordmod.lua"
        self.config = self.dir / "main.lua"
        self.module.write_text('return { word = "m1" }\n')
        self.write_config("v1")
        self.proc = crescent(self.config, ports=[self.port])
        # The watch starts after the workers serve, just before "ready" is logged: an edit
        # before that is another test's subject (test_watch_edit_during_startup...).
        wait_until(lambda: "info: ready:" in self.proc.stderr(), 5 * SLOW, "the ready line")
        assert get(self.port) == "v1 m1\n"

    def config_text(self, body):
        return WATCH_CONFIG.format(module="wordmod", body=body, sock=self.sock, port=self.port)

    def write_config(self, body):
        self.config.write_text(self.config_text(body))

    def reloads(self):
        info = show_info(self.sock)
        return int(info["Reloads"]), int(info["ReloadFailures"])

    def wait_body(self, body, what):
        try:
            wait_until(lambda: get(self.port) == body, 5 * SLOW, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.proc.describe()}") from None

    def assert_no_reload_within(self, seconds, expected):
        """A bounded negative check: Reloads/ReloadFailures stay at `expected`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.reloads() == expected, self.proc.describe()
            time.sleep(0.05)


@pytest.fixture
def watched(crescent, tmp_path, sockdir):
    return Watched(crescent, tmp_path, sockdir)


def test_watch_reloads_on_config_edit(watched):
    """Editing the script changes the answers with no command; so does an editor's save
    (write a temporary file, rename it over), and the watch survives that rename."""
    watched.write_config("v2")
    watched.wait_body("v2 m1\n", "the edited config to serve")
    assert watched.reloads() == (1, 0)
    assert "file watch:" in watched.proc.stderr()

    tmp = watched.dir / ".main.lua.swp"
    tmp.write_text(watched.config_text("v3"))
    os.replace(tmp, watched.config)
    watched.wait_body("v3 m1\n", "the renamed-over config to serve")
    watched.write_config("v4")
    watched.wait_body("v4 m1\n", "an edit after the rename to serve")
    assert watched.reloads() == (3, 0)


def test_watch_reloads_on_required_module_edit(watched):
    watched.module.write_text('return { word = "m2" }\n')
    watched.wait_body("v1 m2\n", "the edited module to serve")
    tmp = watched.dir / "wordmod.lua.tmp"
    tmp.write_text('return { word = "m3" }\n')
    os.replace(tmp, watched.module)
    watched.wait_body("v1 m3\n", "the renamed-over module to serve")
    assert watched.reloads() == (2, 0)


def test_watch_ignores_touch_and_identical_write(watched):
    """A new mtime without new content, or the same bytes written again, reloads nothing
    (checked for a second, then a real edit proves the watch was listening)."""
    now = time.time() + 5
    os.utime(watched.config, (now, now))
    os.utime(watched.module, (now, now))
    watched.config.write_text(watched.config.read_text())
    watched.assert_no_reload_within(1.0, (0, 0))
    assert get(watched.port) == "v1 m1\n"
    watched.write_config("v2")
    watched.wait_body("v2 m1\n", "a real edit to serve")
    assert watched.reloads() == (1, 0)


def test_watch_broken_edit_is_refused_and_old_config_serves(watched):
    broken = watched.config_text("v2").replace('listen "web" {', 'listen "web" {{')
    watched.config.write_text(broken)
    wait_until(lambda: "reload refused" in watched.proc.stderr(), 5 * SLOW,
               "the refused reload in the log")
    assert re.search(r"reload refused, generation 1 keeps serving: .*main\.lua:\d+:",
                     watched.proc.stderr()), watched.proc.stderr()
    assert watched.reloads() == (0, 1)
    for _ in range(5):
        assert get(watched.port) == "v1 m1\n"
    # A module that raises is refused the same way.
    watched.write_config("v1")
    watched.module.write_text('error("module broken on purpose")\n')
    wait_until(lambda: watched.reloads()[1] == 2, 5 * SLOW, "the second refused reload")
    assert "module broken on purpose" in watched.proc.stderr()
    assert get(watched.port) == "v1 m1\n"
    # Fixed: served.
    watched.module.write_text('return { word = "fixed" }\n')
    watched.wait_body("v1 fixed\n", "the fixed module to serve")


SLOW_LOAD_CONFIG = """
-- Each evaluation of this script (the main state, then one per worker) takes a while
-- before it requires its module, which leaves time to edit the module in between.
local t0 = os.clock()
while os.clock() - t0 < {load_s} do end
local mod = require "wordmod"
global {{ threads = 2, watch = {watch}, runtime = {{ socket = "{sock}" }} }}
listen "web" {{
  bind {{ "127.0.0.1:{port}", threads = {{ 1 }} }},
  bind {{ "127.0.0.1:{port2}", threads = {{ 2 }} }},
  service = function(applet) applet:send("{prefix}" .. mod.word .. "\\n") end,
}}
"""


def answers_by_worker(ports, sock=None, n=3):
    """{worker id: set of bodies} from n requests to each of `ports` (SLOW_LOAD_CONFIG's
    binds: the first is served by worker 1 only, the second by worker 2 only)."""
    return {i + 1: {get(p) for _ in range(n)} for i, p in enumerate(ports)}


def cpu_seconds(pid):
    """utime + stime of the process, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def every_worker_serves(ports, sock, body, workers=2):
    """True when a round of requests reached every worker and each answered `body`."""
    seen = answers_by_worker(ports, sock)
    return len(seen) == workers and all(b == {body} for b in seen.values())


@pytest.mark.parametrize("edited", [
    "module",
    "config",
])
def test_watch_edit_during_startup(edited, crescent, tmp_path, sockdir):
    """The config or a module edited while the process starts (after the first worker
    serves): every worker ends up serving the new content."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "wordmod.lua").write_text('return { word = "m1" }\n')
    port, port2, sock = free_port(), free_port(), sockdir / "rt.sock"
    ports = (port, port2)
    cfg = conf / "main.lua"
    text = lambda prefix: SLOW_LOAD_CONFIG.format(  # noqa: E731
        load_s=0.5, watch="true", sock=sock, port=port, port2=port2, prefix=prefix)
    cfg.write_text(text("a "))
    c = crescent(cfg, ports=[port])
    # Worker 1 alone serves `port`: an answer means it serves (it loaded m1), while worker
    # 2 may still be evaluating the script.
    assert get(port) == "a m1\n"
    if edited == "module":
        (conf / "wordmod.lua").write_text('return { word = "m2" }\n')
        want = "a m2\n"
    else:
        cfg.write_text(text("b "))
        want = "b m1\n"
    wait_until(lambda: "info: ready:" in c.stderr(), 10 * SLOW, "the ready line")
    try:
        wait_until(lambda: every_worker_serves(ports, sock, want), 5 * SLOW,
                   f"every worker to serve {want!r}")
    except AssertionError as e:
        raise AssertionError(f"{e}: {answers_by_worker(ports)}\n{c.describe()}") from None


def test_reload_gives_every_worker_the_same_module(crescent, tmp_path, sockdir):
    """A module edited while a `reload` builds its states: the new generation still runs
    one configuration (the old content everywhere, or the new content everywhere)."""
    conf = tmp_path / "conf"
    conf.mkdir()
    module = conf / "wordmod.lua"
    module.write_text('return { word = "m1" }\n')
    port, port2, sock = free_port(), free_port(), sockdir / "rt.sock"
    ports = (port, port2)
    cfg = conf / "main.lua"
    # Three evaluations of 0.6 s each per reload: the main state, worker 1, worker 2.
    cfg.write_text(SLOW_LOAD_CONFIG.format(load_s=0.6, watch="false", sock=sock, port=port,
                                           port2=port2, prefix=""))
    c = crescent(cfg, ports=[port])
    wait_until(lambda: "info: ready:" in c.stderr(), 10 * SLOW, "the ready line")
    wait_until(lambda: every_worker_serves(ports, sock, "m1\n"), 5 * SLOW, "both workers on m1")
    # The script's busy loop counts the process's CPU time (os.clock), and so does this
    # test: the edit lands between worker 1's require (1.2 s of CPU into the reload) and
    # worker 2's (1.8 s), however busy the machine is.
    cpu0 = cpu_seconds(c.pid)
    reload = subprocess.Popen([CRESCENT_BIN, "reload", "-s", sock], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: cpu_seconds(c.pid) - cpu0 >= 1.5, 30 * SLOW, "1.5 s of CPU", 0.005)
        module.write_text('return { word = "m2" }\n')
        out, _ = reload.communicate(timeout=30 * SLOW)
    finally:
        if reload.poll() is None:
            reload.kill()
            reload.wait()
    assert reload.returncode == 0, out
    # Either content is right, as long as it is the same on every worker.
    seen = answers_by_worker(ports)
    assert len(set.union(*seen.values())) == 1, f"workers disagree: {seen}\n{c.describe()}"
