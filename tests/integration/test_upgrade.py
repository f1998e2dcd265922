"""Binary upgrade and signals (docs/reload.md, "Binary upgrade" and "Signals").

A binary upgrade starts a second process with `-x OLD_RUNTIME_SOCKET -sf OLD_PID` (or
`-st`): it takes the listening sockets over the old process's runtime socket, serves, and
tells the old one to stop accepting and finish. Everything here checks it from outside, the
way an operator would see it: no connection attempt refused or reset while load runs
through ten upgrades in a row, the old process living exactly as long as its tunnels, its
exit code, the pidfile and the runtime socket path passing to the new process, and
scripts/upgrade. Then the signals: SIGTTOU/SIGTTIN pause and resume the listeners, SIGUSR1
is a soft stop (keep-alive connections are told `Connection: close`, tunnels run on, at
most `hard_stop_after`).

The first process of each test is started by the `crescent` fixture; the processes of the
upgrades are the test's own (the `upgrades` fixture below stops and checks them, even when
the test fails).
"""

import base64
import collections
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import conftest
from conftest import (
    SLOW,
    SOURCE_DIR,
    STOP_TIMEOUT,
    CRESCENT_BIN,
    Crescent,
    can_connect,
    free_port,
    stop_all,
    wait_until,
)

# One process per generation of the test, told apart by $TAG in every HTTP answer
# ("tag=p3"). A TCP listen in front of an echo server carries the tunnels.
CONFIG = """
local TAG = env("TAG", "none")
global {{
  threads = 2,
  hard_stop_after = "{hard_stop_after}",
  runtime = {{ socket = "{sock}", mode = "0600", expose_fd_listeners = true }},
}}
defaults {{
  timeout = {{ connect = "2s", client = "30s", server = "30s", tunnel = "1m",
              http_keep_alive = "30s" }},
}}
listen "web" {{
  bind {{ "127.0.0.1:{http_port}" }},
{web_body}
}}
listen "echo" {{
  mode = "tcp",
  bind {{ "127.0.0.1:{tcp_port}" }},
  server "echo" {{ "127.0.0.1:{echo_port}" }},
}}
listen "ws" {{
  bind {{ "127.0.0.1:{ws_port}" }},
  server "ws" {{ "127.0.0.1:{ws_backend}" }},
}}
{extra}
"""

WEB_SERVICE = """
  service = function(applet)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:send("tag=" .. TAG .. "\\n")
  end,"""

EXIT_TIMEOUT = 15 * SLOW


# ---------------------------------------------------------------------------------------
# Helpers


class Setup:
    """Ports, paths and the config text shared by a test's processes."""

    def __init__(self, tmp_path, sockdir, echo_port=None, ws_backend=None, hard_stop_after="1m",
                 extra="", web_backend=None):
        self.tmp_path = tmp_path
        self.sock = sockdir / "rt.sock"
        self.pidfile = tmp_path / "crescent.pid"
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.ws_port = free_port()
        self.config = tmp_path / "crescent.lua"
        self.config.write_text(CONFIG.format(
            sock=self.sock, http_port=self.http_port, tcp_port=self.tcp_port,
            echo_port=echo_port or free_port(), ws_port=self.ws_port,
            ws_backend=ws_backend or free_port(), hard_stop_after=hard_stop_after,
            extra=extra,
            web_body=WEB_SERVICE if web_backend is None
            else f'  server "nginx" {{ "127.0.0.1:{web_backend}" }},',
        ))

    def start(self, crescent, tag="p0"):
        c = crescent(self.config, ports=[self.http_port, self.tcp_port], env={"TAG": tag},
                     args=["-p", self.pidfile], name=f"crescent-{tag}")
        wait_until(lambda: show_info(self.sock).get("Pid") == str(c.pid), 5 * SLOW,
                   "the runtime socket of the first process")
        return c


@pytest.fixture
def upgrades(request, tmp_path):
    """upgrades(setup, old, tag, stop_flag="-sf") starts the process of a binary upgrade
    from `old` (a Process) and returns it. At teardown each one still running gets SIGTERM
    and must exit 0; one that exited on its own must have exited 0."""
    started = []

    def start(setup, old, tag, stop_flag="-sf", config=None):
        c = Crescent(
            config or setup.config, setup.tmp_path, env={"TAG": tag},
            args=["-p", setup.pidfile, "-x", setup.sock, stop_flag, str(old.pid)],
            name=f"crescent-{tag}",
        )
        started.append(c)
        return c

    yield start

    stop_all(started, request)


def rt_command(path, command, timeout=5 * SLOW):
    """One command on the runtime socket at `path`; returns the reply text (without the
    empty line that ends it), or None when the socket does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(command.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)
            data = b""
            while not data.endswith(b"\n\n") and data != b"\n":
                chunk = s.recv(65536)
                if not chunk:
                    return None
                data += chunk
            return data.decode()[:-1].rstrip("\n")
    except OSError:
        return None


def show_info(path):
    """`show info` as a dict ({} when the socket does not answer)."""
    reply = rt_command(path, "show info") or ""
    return dict(line.split(": ", 1) for line in reply.splitlines() if ": " in line)


def wait_serving(setup, proc):
    """Waits until `proc` answers `show info` on the runtime socket path with its pid (the
    path has passed to it) and its pidfile names it."""
    def ready():
        if not proc.running():
            raise AssertionError(
                f"{proc.name} exited with {proc.proc.returncode}\n{proc.describe()}")
        return (show_info(setup.sock).get("Pid") == str(proc.pid)
                and setup.pidfile.exists() and setup.pidfile.read_text().strip() == str(proc.pid))
    try:
        wait_until(ready, 10 * SLOW, f"{proc.name} on the runtime socket and in the pidfile")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{proc.describe()}") from None


def wait_exit(proc, timeout=EXIT_TIMEOUT):
    """Waits (bounded) for `proc` to exit on its own; returns its exit code."""
    try:
        return proc.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{proc.name} still running after {timeout}s\n{proc.describe()}") from None


def still_running_after(proc, seconds):
    """True when `proc` is still running `seconds` from now (a bounded negative check)."""
    try:
        proc.proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        return True


def wait_log(proc, text, timeout=5 * SLOW):
    try:
        wait_until(lambda: text in proc.stderr(), timeout, f"{text!r} in {proc.name}'s log")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{proc.describe()}") from None


def read_response(sock):
    """conftest.read_response with the body as text."""
    r = conftest.read_response(sock)
    return None if r is None else (r[0], r[1], r[2].decode())


def get(port, keep_alive=False, timeout=5 * SLOW):
    """One GET / on a new connection; returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        conn = "keep-alive" if keep_alive else "close"
        s.sendall(f"GET / HTTP/1.1\r\nHost: t\r\nConnection: {conn}\r\n\r\n".encode())
        r = read_response(s)
        assert r is not None, "connection closed without a response"
        return r


def tag_of(port):
    status, _, body = get(port)
    assert status == 200, body
    return body.strip()


def echo_roundtrip(sock, payload, timeout=5 * SLOW):
    sock.settimeout(timeout)
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"tunnel closed after {got!r}")
        got += chunk
    return got


def wait_cut(sock, timeout=5 * SLOW):
    """Waits until the peer closes `sock` (EOF or reset); returns how it ended."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return "eof"
    except ConnectionResetError:
        return "reset"


class WebSocket:
    """The smallest WebSocket client: handshake, masked text frames out, unmasked in."""

    def __init__(self, port, path="/echo", timeout=5 * SLOW):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_text(self, text):
        data = text.encode()
        assert len(data) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + masked)

    def _exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("WebSocket closed")
            out += chunk
        return out

    def recv_text(self):
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self._exact(8), "big")
        payload = self._exact(n)
        assert b0 & 0x0F == 1, f"opcode {b0 & 0x0F}, payload {payload!r}"
        return payload.decode()

    def roundtrip(self, text):
        self.send_text(text)
        return self.recv_text()

    def close(self):
        self.sock.close()


def echo_handler(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


# ---------------------------------------------------------------------------------------
# Load: HTTP clients counting every failure


class Load:
    """HTTP load from threads against `port`: `closers` clients opening a connection per
    request, `keepalive` clients reusing theirs (reconnecting after `Connection: close`,
    as a correct client does). Every refused connection, reset, timeout, early close or
    non-200 answer is a failure. Counts answers per body ("tag=p3") and per kind."""

    def __init__(self, port, closers=3, keepalive=3):
        self.port = port
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.failures = []
        self.served = collections.Counter()  # (kind, tag) -> answers
        self.last_ok = None
        self.longest_gap = 0.0
        self.threads = [threading.Thread(target=self._closer, daemon=True) for _ in range(closers)]
        self.threads += [threading.Thread(target=self._keepalive, daemon=True)
                         for _ in range(keepalive)]

    def __enter__(self):
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "load threads did not stop"

    def count(self, tag, kind=None):
        with self.lock:
            return sum(n for (k, t), n in self.served.items()
                       if tag in (None, t) and kind in (None, k))

    def _ok(self, kind, body):
        now = time.monotonic()
        with self.lock:
            self.served[(kind, body.strip())] += 1
            if self.last_ok is not None:
                self.longest_gap = max(self.longest_gap, now - self.last_ok)
            self.last_ok = now

    def _fail(self, kind, what):
        with self.lock:
            self.failures.append(f"{time.monotonic() - self.started:.3f}s {kind}: {what}")

    def _closer(self):
        while not self.stop_event.is_set():
            try:
                status, _, body = get(self.port)
                if status != 200:
                    self._fail("close", f"status {status}: {body!r}")
                else:
                    self._ok("close", body)
            except Exception as e:  # every kind of failure counts
                self._fail("close", repr(e))

    def _keepalive(self):
        sock = None
        request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        while not self.stop_event.is_set():
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
                sock.sendall(request)
                r = read_response(sock)
                if r is None:
                    raise ConnectionError("keep-alive connection closed with no response")
                status, headers, body = r
                if status != 200:
                    self._fail("keepalive", f"status {status}: {body!r}")
                else:
                    self._ok("keepalive", body)
                if headers.get("connection", "").lower() == "close":
                    sock.close()
                    sock = None
            except Exception as e:
                self._fail("keepalive", repr(e))
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()


# ---------------------------------------------------------------------------------------
# Binary upgrade


def served_by(proc):
    """Answers with status 200 in `proc`'s traffic log (readiness probes left out)."""
    return sum(1 for d in proc.http_logs() if d["status"] == 200)


@pytest.mark.parametrize("backend", ["service", "nginx"])
def test_ten_binary_upgrades_under_load(backend, crescent, upgrades, nginx, tmp_path, sockdir):
    """Ten upgrades in a row (-x the current process's runtime socket, -sf its pid) while
    clients send requests on new and on keep-alive connections, answered by a Lua service
    or by nginx: no request fails, every process serves (with the service: both kinds of
    clients), each old process exits 0, answers never stop for long, and the last process
    holds the runtime socket path and the pidfile."""
    setup = Setup(tmp_path, sockdir, web_backend=nginx.port if backend == "nginx" else None)
    current = setup.start(crescent, "p0")
    procs = [current]

    def served(tag, proc, kind):
        if backend == "service":
            return load.count(f"tag={tag}", kind)
        return served_by(proc) if kind == "close" else load.count(None, kind)

    with Load(setup.http_port) as load:
        wait_until(lambda: served("p0", current, "close") and served("p0", current, "keepalive"),
                   10 * SLOW, "load served by p0")
        for i in range(1, 11):
            tag = f"p{i}"
            new = upgrades(setup, current, tag)
            procs.append(new)
            wait_serving(setup, new)
            rc = wait_exit(current)
            assert rc == 0, f"{current.name} exited with {rc}\n{current.describe()}"
            assert "soft stop: every session ended" in current.stderr(), current.describe()
            before = served(tag, new, "keepalive")
            wait_until(
                lambda: served(tag, new, "close") >= 5
                and served(tag, new, "keepalive") >= before + 5,
                10 * SLOW, f"load served by {tag} on new and keep-alive connections",
            )
            current = new
        load.stop()
    print(f"served: {sorted(load.served.items())}; longest gap {load.longest_gap:.3f}s")
    assert load.failures == [], (
        f"{len(load.failures)} failed requests:\n" + "\n".join(load.failures[:30])
    )
    for i, proc in enumerate(procs):
        assert served_by(proc) > 0, f"{proc.name} served nothing\n{proc.describe()}"
        if backend == "service":
            assert load.count(f"tag=p{i}", "close") > 0, dict(load.served)
            assert load.count(f"tag=p{i}", "keepalive") > 0, dict(load.served)
        else:
            assert set(t for _, t in load.served) == {"<h1>hello from nginx</h1>"}
    # Every answer the clients got is in exactly one process's log.
    total = sum(load.served.values())
    wait_until(lambda: sum(map(served_by, procs)) == total, 5 * SLOW,
               f"{total} answers in the traffic logs")
    assert load.longest_gap < 2 * SLOW, f"no answer for {load.longest_gap:.2f}s"
    assert show_info(setup.sock)["Pid"] == str(current.pid)
    assert setup.pidfile.read_text().strip() == str(current.pid)


@pytest.mark.parametrize("kind", ["tcp", "websocket"])
def test_old_process_lives_until_its_last_tunnel_closes(
        kind, crescent, upgrades, tcp_server, ws_server, tmp_path, sockdir):
    """The old process keeps a TCP tunnel or a WebSocket open and working after the
    upgrade, new connections go to the new process, and the old one exits 0 as soon as the
    tunnel closes."""
    echo = tcp_server(echo_handler)
    setup = Setup(tmp_path, sockdir, echo_port=echo.port, ws_backend=ws_server.port)
    old = setup.start(crescent, "old")
    if kind == "tcp":
        tunnel = socket.create_connection(("127.0.0.1", setup.tcp_port), timeout=5 * SLOW)
        roundtrip = lambda text: echo_roundtrip(tunnel, text.encode()).decode()  # noqa: E731
        close = tunnel.close
    else:
        ws = WebSocket(setup.ws_port)
        roundtrip, close = ws.roundtrip, ws.close
    try:
        assert roundtrip("before") == "before"
        new = upgrades(setup, old, "new")
        wait_serving(setup, new)
        wait_log(old, "soft stop: no longer accepting; 1 session to finish")

        # The old process waits for the tunnel ...
        assert still_running_after(old, 1.0), old.describe()
        assert roundtrip("during the upgrade") == "during the upgrade"
        # ... while new connections are the new process's.
        for _ in range(10):
            assert tag_of(setup.http_port) == "tag=new"
        with socket.create_connection(("127.0.0.1", setup.tcp_port), timeout=5 * SLOW) as t2:
            assert echo_roundtrip(t2, b"second") == b"second"
            sessions = rt_command(setup.sock, "show sess")
            assert sessions is not None and "fe=echo" in sessions, sessions
        assert old.running(), old.describe()
        assert roundtrip("still") == "still"
    finally:
        close()
    rc = wait_exit(old)
    assert rc == 0, old.describe()
    assert "soft stop: every session ended" in old.stderr(), old.describe()
    assert new.running(), new.describe()
    assert tag_of(setup.http_port) == "tag=new"


def test_upgrade_st_stops_the_old_process_at_once(
        crescent, upgrades, tcp_server, tmp_path, sockdir):
    """-st: once the new process serves, the old one gets SIGTERM, cuts its tunnel and
    exits promptly, without waiting for the tunnel."""
    echo = tcp_server(echo_handler)
    setup = Setup(tmp_path, sockdir, echo_port=echo.port)
    old = setup.start(crescent, "old")
    with socket.create_connection(("127.0.0.1", setup.tcp_port), timeout=5 * SLOW) as tunnel:
        assert echo_roundtrip(tunnel, b"ping") == b"ping"
        new = upgrades(setup, old, "new", stop_flag="-st")
        wait_serving(setup, new)
        t0 = time.monotonic()
        rc = wait_exit(old, timeout=5 * SLOW)
        assert rc == 0, old.describe()
        assert time.monotonic() - t0 < 3 * SLOW
        assert "SIGTERM" in old.stderr(), old.describe()
        assert wait_cut(tunnel) in ("eof", "reset")
    assert tag_of(setup.http_port) == "tag=new"
    with socket.create_connection(("127.0.0.1", setup.tcp_port), timeout=5 * SLOW) as t2:
        assert echo_roundtrip(t2, b"after") == b"after"


def test_upgrade_passes_unix_bind_and_runtime_socket_paths(crescent, upgrades, tmp_path, sockdir):
    """A UNIX socket bind travels to the new process: its path still accepts after the old
    process exited (the old one must not unlink what it no longer owns), and so does the
    runtime socket path."""
    web_sock = sockdir / "web.sock"
    extra = f"""
listen "unixweb" {{
  bind {{ "unix:{web_sock}" }},
  service = function(applet)
    applet:set_status(200)
    applet:send("unix " .. TAG .. "\\n")
  end,
}}
"""
    setup = Setup(tmp_path, sockdir, extra=extra)
    old = setup.start(crescent, "old")

    def unix_get():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5 * SLOW)
            s.connect(str(web_sock))
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = read_response(s)
            assert r is not None
            return r[2].strip()

    assert unix_get() == "unix old"
    new = upgrades(setup, old, "new")
    wait_serving(setup, new)
    assert wait_exit(old) == 0, old.describe()
    assert web_sock.is_socket() and setup.sock.is_socket()
    assert unix_get() == "unix new"
    assert show_info(setup.sock)["Pid"] == str(new.pid)


def test_upgrade_from_a_dead_socket_fails_and_old_keeps_serving(crescent, tmp_path, sockdir):
    """A new process whose -x socket does not give listeners (a path with nothing behind it)
    exits 1 with a message naming the socket; the old process and its pidfile stay."""
    setup = Setup(tmp_path, sockdir)
    old = setup.start(crescent, "old")
    bogus = sockdir / "nothing.sock"
    c = Crescent(setup.config, tmp_path, env={"TAG": "new"},
                 args=["-p", setup.pidfile, "-x", bogus, "-sf", str(old.pid)], name="crescent-new")
    try:
        rc = c.proc.wait(timeout=10 * SLOW)
    finally:
        c.stop()
    assert rc == 1, c.describe()
    assert str(bogus) in c.stderr(), c.describe()
    assert old.running()
    assert setup.pidfile.read_text().strip() == str(old.pid)
    assert tag_of(setup.http_port) == "tag=old"


# ---------------------------------------------------------------------------------------
# scripts/upgrade


def _pid_alive(pid):
    """True while `pid` runs (a zombie, not reaped by an init that ignores orphans, is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _run_upgrade_script(tmp_path, setup, config, name, extra_args=()):
    """Runs scripts/upgrade; stdout/stderr go to files (the new process inherits the
    script's output through tee, so pipes would stay open as long as it runs)."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        rc = subprocess.run(
            [SOURCE_DIR / "scripts" / "upgrade", "-p", setup.pidfile, "-f", config,
             "-s", setup.sock, "-b", CRESCENT_BIN, "-l", tmp_path / f"{name}.log", *extra_args],
            stdin=subprocess.DEVNULL, stdout=o, stderr=e, timeout=60 * SLOW,
            env=dict(os.environ, TAG=name),
        ).returncode
    return rc, out.read_text(), err.read_text()


def _stop_pid(pid):
    """SIGTERM to a process that is not our child; bounded wait, then SIGKILL."""
    if not _pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not _pid_alive(pid), STOP_TIMEOUT, f"process {pid} to exit")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise


def test_scripts_upgrade(crescent, tmp_path, sockdir):
    """scripts/upgrade: a broken new configuration -> exit 1, the old process untouched
    and its pidfile unchanged; then a good one -> prints the new pid, which the pidfile and
    the runtime socket name, and the old process is gone (exit 0)."""
    setup = Setup(tmp_path, sockdir)
    old = setup.start(crescent, "old")
    broken = tmp_path / "broken.lua"
    broken.write_text(setup.config.read_text().replace('listen "echo" {', 'listen "echo" {{'))

    rc, out, err = _run_upgrade_script(tmp_path, setup, broken, "broken")
    assert rc == 1, (out, err)
    assert "keeps serving" in err and "broken.lua:" in err, err
    assert old.running()
    assert setup.pidfile.read_text().strip() == str(old.pid)
    assert show_info(setup.sock)["Pid"] == str(old.pid)
    assert tag_of(setup.http_port) == "tag=old"

    new_pid = None
    try:
        rc, out, err = _run_upgrade_script(tmp_path, setup, setup.config, "new")
        assert rc == 0, (out, err)
        new_pid = int(out.strip())
        assert setup.pidfile.read_text().strip() == str(new_pid)
        assert show_info(setup.sock)["Pid"] == str(new_pid)
        assert wait_exit(old) == 0, old.describe()
        assert tag_of(setup.http_port) == "tag=new"
        assert "binary upgrade: 3 listening sockets received" in (tmp_path / "new.log").read_text()
    finally:
        if new_pid is not None:
            _stop_pid(new_pid)
        else:  # the script failed: whatever the pidfile names other than `old` is ours
            text = setup.pidfile.read_text().strip() if setup.pidfile.exists() else ""
            if text.isdigit() and int(text) != old.pid:
                _stop_pid(int(text))
    # The new process removes the pidfile that names it when it stops.
    assert not setup.pidfile.exists()


def test_scripts_upgrade_failing_bind_keeps_pidfile(crescent, tmp_path, sockdir):
    """A new configuration that loads but cannot bind (a new address already taken) is a
    failed upgrade too: exit 1, the old process serves, the pidfile still names it."""
    setup = Setup(tmp_path, sockdir)
    old = setup.start(crescent, "old")
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        busy = tmp_path / "busy.lua"
        busy.write_text(setup.config.read_text() + f"""
listen "more" {{
  bind {{ "127.0.0.1:{taken.getsockname()[1]}" }},
  service = function(applet) applet:send("x") end,
}}
""")
        rc, out, err = _run_upgrade_script(tmp_path, setup, busy, "busy")
        assert rc == 1, (out, err)
        assert "Address already in use" in err, err
        assert old.running()
        assert show_info(setup.sock)["Pid"] == str(old.pid)
        assert tag_of(setup.http_port) == "tag=old"
        assert setup.pidfile.exists(), "the pidfile of the running process was removed"
        assert setup.pidfile.read_text().strip() == str(old.pid)
    finally:
        taken.close()


# ---------------------------------------------------------------------------------------
# Signals


def test_sigttou_pauses_and_sigttin_resumes(crescent, tmp_path, sockdir):
    """SIGTTOU: a new connection is not refused (it waits in the kernel's queue) and its
    request is not answered; SIGTTIN: it is answered."""
    setup = Setup(tmp_path, sockdir)
    c = setup.start(crescent, "p0")
    c.proc.send_signal(signal.SIGTTOU)
    wait_log(c, "SIGTTOU: listeners paused")
    with socket.create_connection(("127.0.0.1", setup.http_port), timeout=2 * SLOW) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(1)  # nobody accepted it: no answer within 0.5 s
        assert c.running()
        c.proc.send_signal(signal.SIGTTIN)
        s.settimeout(5 * SLOW)
        r = read_response(s)
        assert r is not None and r[0] == 200 and r[2] == "tag=p0\n", r
    wait_log(c, "SIGTTIN: listeners resumed")
    assert tag_of(setup.http_port) == "tag=p0"


def test_sigusr1_idle_keepalive_gets_connection_close(crescent, tmp_path, sockdir):
    """SIGUSR1: new connections are refused, an idle keep-alive connection answers its next
    request with `Connection: close` and closes, then the process exits 0."""
    setup = Setup(tmp_path, sockdir)
    c = setup.start(crescent, "p0")
    with socket.create_connection(("127.0.0.1", setup.http_port), timeout=5 * SLOW) as s:
        request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        s.sendall(request)
        status, headers, body = read_response(s)
        assert status == 200 and headers.get("connection", "").lower() != "close", headers
        c.proc.send_signal(signal.SIGUSR1)
        # (the readiness probe of the TCP listen may still be a session: its server is down)
        wait_log(c, "SIGUSR1: soft stop: no longer accepting;")
        # The workers close their listeners just after the log line.
        wait_until(lambda: not can_connect(setup.http_port), 5 * SLOW, "connections refused")
        assert c.running()
        s.sendall(request)
        status, headers, body = read_response(s)
        assert status == 200 and body == "tag=p0\n"
        assert headers.get("connection", "").lower() == "close", headers
        assert wait_cut(s) == "eof"
    assert wait_exit(c) == 0, c.describe()
    assert "soft stop: every session ended" in c.stderr()


def test_sigusr1_hard_stop_after_closes_tunnel(crescent, tcp_server, tmp_path, sockdir):
    """SIGUSR1 with an open tunnel and hard_stop_after = 1s: the tunnel keeps working at
    first, then is closed, and the process exits 0 about a second after the signal."""
    echo = tcp_server(echo_handler)
    setup = Setup(tmp_path, sockdir, echo_port=echo.port, hard_stop_after="1s")
    c = setup.start(crescent, "p0")
    with socket.create_connection(("127.0.0.1", setup.tcp_port), timeout=5 * SLOW) as tunnel:
        assert echo_roundtrip(tunnel, b"one") == b"one"
        t0 = time.monotonic()
        c.proc.send_signal(signal.SIGUSR1)
        wait_log(c, "soft stop: no longer accepting")
        assert echo_roundtrip(tunnel, b"two") == b"two"
        rc = wait_exit(c, timeout=6 * SLOW)
        elapsed = time.monotonic() - t0
        assert rc == 0, c.describe()
        assert 0.9 <= elapsed < 4 * SLOW, elapsed
        assert wait_cut(tunnel) in ("eof", "reset")
    assert "hard_stop_after reached" in c.stderr(), c.describe()


@pytest.mark.parametrize("sig, name", [(signal.SIGHUP, "SIGHUP"), (signal.SIGUSR2, "SIGUSR2")])
def test_sighup_and_sigusr2_reload(sig, name, crescent, tmp_path, sockdir):
    """SIGHUP and SIGUSR2 reload in place: same pid, next generation, log line, and the
    edited configuration answers."""
    setup = Setup(tmp_path, sockdir)
    c = setup.start(crescent, "p0")
    setup.config.write_text(setup.config.read_text().replace('"tag=" ..', '"reloaded tag=" ..'))
    c.proc.send_signal(sig)
    wait_log(c, f"reload ({name}): generation 2 serving")
    info = show_info(setup.sock)
    assert info["Pid"] == str(c.pid) and info["Generation"] == "2" and info["Reloads"] == "1"
    assert tag_of(setup.http_port) == "reloaded tag=p0"


def test_upgrade_applies_a_new_config(crescent, upgrades, tmp_path, sockdir):
    """The new process of an upgrade may run another configuration: a bind it does not
    have any more is closed once the old process is gone, a new bind opens, and `threads`
    (fixed for in-process reloads) takes its new value."""
    setup = Setup(tmp_path, sockdir)
    old = setup.start(crescent, "old")
    new_port = free_port()
    cfg = setup.config.read_text()
    start = cfg.index('listen "echo" {')
    end = cfg.index('listen "ws" {')
    cfg = cfg[:start] + cfg[end:]  # no more echo listen
    cfg = cfg.replace("threads = 2,", "threads = 3,") + f"""
listen "added" {{
  bind {{ "127.0.0.1:{new_port}" }},
  service = function(applet) applet:send("added " .. TAG .. "\\n") end,
}}
"""
    new_config = tmp_path / "new.lua"
    new_config.write_text(cfg)
    new = upgrades(setup, old, "new", config=new_config)
    wait_serving(setup, new)
    assert wait_exit(old) == 0, old.describe()
    assert show_info(setup.sock)["Threads"] == "3"
    assert tag_of(setup.http_port) == "tag=new"
    assert get(new_port)[2] == "added new\n"
    closed = f"127.0.0.1:{setup.tcp_port} is not bound by this configuration: closed"
    assert closed in new.stderr(), new.describe()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", setup.tcp_port), timeout=2 * SLOW).close()
