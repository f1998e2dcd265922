"""Shared fixtures for crescent's integration tests.

Everything here runs real processes on 127.0.0.1: the crescent binary under test
($CRESCENT_BIN), nginx, MariaDB and a Python WebSocket server. Each process gets free
ports, its own files under the test's tmp_path, a bounded wait until it accepts
connections, and is stopped (and checked) when the test ends, even when it fails.
No test sleeps to wait for something that can be polled.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SOURCE_DIR = Path(os.environ.get("CRESCENT_SOURCE_DIR") or HERE.parents[1])
CRESCENT_BIN = os.environ.get("CRESCENT_BIN") or str(SOURCE_DIR / "build" / "crescent")
EXAMPLES = SOURCE_DIR / "examples"
PYTHON = "/usr/bin/python3"  # Debian's, with python3-websockets

# Under the sanitizers everything is slower: scale the waits, not the assertions.
SLOW = 3 if os.environ.get("ASAN_OPTIONS") else 1
START_TIMEOUT = 15 * SLOW
STOP_TIMEOUT = 15 * SLOW


# ---------------------------------------------------------------------------
# Ports and polling


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (bind port 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def addr(port):
    return f"127.0.0.1:{port}"


def can_connect(port, host="127.0.0.1"):
    """Connects and closes. Returns the local port used (truthy), or None."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            return s.getsockname()[1]
    except OSError:
        return None


def wait_until(predicate, timeout, what, interval=0.02):
    """Polls predicate() until it returns a truthy value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Traffic log lines (HAProxy httplog / tcplog shape)

_DATE = r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3}"
HTTPLOG_RE = re.compile(
    r"^(?P<client>\S+):(?P<client_port>\d+) \[(?P<date>" + _DATE + r")\] "
    r"(?P<frontend>\S+) (?P<backend>[^/\s]+)/(?P<server>\S+) "
    r"(?P<TR>-?\d+)/(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tr>-?\d+)/(?P<Ta>\+?-?\d+) "
    r"(?P<status>-?\d+) (?P<bytes>\+?\d+) (?P<req_cookie>\S+) (?P<resp_cookie>\S+) "
    r"(?P<state>\S{4}) "
    r"(?P<actconn>\d+)/(?P<feconn>\d+)/(?P<beconn>\d+)/(?P<srv_conn>\d+)/(?P<retries>\+?\d+) "
    r"(?P<srv_queue>\d+)/(?P<backend_queue>\d+) "
    r'"(?P<request>.*)"$'
)
TCPLOG_RE = re.compile(
    r"^(?P<client>\S+):(?P<client_port>\d+) \[(?P<date>" + _DATE + r")\] "
    r"(?P<frontend>\S+) (?P<backend>[^/\s]+)/(?P<server>\S+) "
    r"(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tt>\+?-?\d+) (?P<bytes>\+?\d+) (?P<state>\S{2}) "
    r"(?P<actconn>\d+)/(?P<feconn>\d+)/(?P<beconn>\d+)/(?P<srv_conn>\d+)/(?P<retries>\+?\d+) "
    r"(?P<srv_queue>\d+)/(?P<backend_queue>\d+)$"
)


def parse_httplog(line):
    m = HTTPLOG_RE.match(line)
    if not m:
        return None
    d = m.groupdict()
    d["status"] = int(d["status"])
    return d


def parse_tcplog(line):
    m = TCPLOG_RE.match(line)
    return m.groupdict() if m else None


# ---------------------------------------------------------------------------
# Processes


class Process:
    """A child process with stdout/stderr captured to files under `workdir`."""

    def __init__(self, name, argv, workdir, env=None, cwd=None, user=None):
        """`user`: run as that user (and its group) instead of the caller (root only)."""
        self.name = name
        self.argv = [str(a) for a in argv]
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.workdir / f"{name}.stdout"
        self.stderr_path = self.workdir / f"{name}.stderr"
        self._env = dict(os.environ)
        self._env.update({k: str(v) for k, v in (env or {}).items()})
        self._cwd = cwd or self.workdir
        self._user = user
        self.probe_ports = set()  # client ports of the readiness probes
        self._spawn("wb")

    def _spawn(self, mode):
        self._out = open(self.stdout_path, mode)
        self._err = open(self.stderr_path, mode)
        ids = {}
        if self._user:
            import pwd

            pw = pwd.getpwnam(self._user)
            ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=self._env,
            cwd=self._cwd,
            **ids,
        )
        self.returncode = None

    def start_again(self):
        """Runs the same command again after stop() (its output is appended)."""
        assert self.returncode is not None, f"{self.name} is still running"
        self._spawn("ab")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def describe(self, tail=4000):
        return (
            f"--- {self.name} {' '.join(self.argv)}\n"
            f"--- stdout ({self.stdout_path}):\n{self.stdout()[-tail:]}\n"
            f"--- stderr ({self.stderr_path}):\n{self.stderr()[-tail:]}"
        )

    def wait_ready(self, ports, timeout=START_TIMEOUT):
        """Polls until every port accepts a connection; fails if the process exits."""
        deadline = time.monotonic() + timeout
        pending = list(ports)
        while pending:
            if not self.running():
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode} before listening on "
                    f"{pending}\n{self.describe()}"
                )
            local = can_connect(pending[0])
            if local:
                self.probe_ports.add(str(local))
                pending.pop(0)
                continue
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.name} not listening on {pending} after {timeout}s\n{self.describe()}"
                )
            time.sleep(0.02)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig, waits (bounded), kills if it does not exit. Returns the exit code."""
        if self.returncode is not None:
            return self.returncode
        if self.running():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.returncode = "killed (did not exit after signal)"
        if self.returncode is None:
            self.returncode = self.proc.returncode
        self._out.close()
        self._err.close()
        return self.returncode


class Crescent(Process):
    """The binary under test. stdout carries traffic log lines, stderr diagnostics."""

    def __init__(self, config, workdir, env=None, args=(), name="crescent"):
        self.config = Path(config)
        super().__init__(name, [CRESCENT_BIN, *args, "-f", self.config], workdir, env=env)

    def log_lines(self):
        return [l for l in self.stdout().splitlines() if l.strip()]

    def http_logs(self):
        """Parsed httplog lines, without those of the readiness probes."""
        return [
            d for d in map(parse_httplog, self.log_lines())
            if d and d["client_port"] not in self.probe_ports
        ]

    def tcp_logs(self):
        """Parsed tcplog lines, without those of the readiness probes."""
        return [
            d for d in map(parse_tcplog, self.log_lines())
            if d and d["client_port"] not in self.probe_ports
        ]

    def wait_http_log(self, predicate, timeout=5 * SLOW, what="an httplog line"):
        """Returns the first parsed httplog line matching predicate (bounded wait)."""

        def find():
            for d in self.http_logs():
                if predicate(d):
                    return d
            return None

        try:
            return wait_until(find, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.describe()}") from None

    def wait_tcp_log(self, predicate, timeout=5 * SLOW, what="a tcplog line"):
        def find():
            for d in self.tcp_logs():
                if predicate(d):
                    return d
            return None

        try:
            return wait_until(find, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.describe()}") from None


def run_crescent(args, env=None, unset=(), timeout=30 * SLOW):
    """Runs crescent to completion (for -c, --version, -h). `env` is added to the
    environment, the names in `unset` are removed from it."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    for name in unset:
        full_env.pop(name, None)
    return subprocess.run(
        [CRESCENT_BIN, *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


# ---------------------------------------------------------------------------
# Fixtures


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


def stop_all(started, request):
    """Teardown of crescent processes a test started: each still running gets SIGTERM and
    must exit 0; one that exited on its own must have exited 0. Their output is printed
    when the test failed."""
    problems = []
    for c in started:
        was_running = c.running()
        rc = c.stop()
        if not was_running and c.returncode != 0:
            problems.append(f"{c.name} exited on its own with {rc}\n{c.describe()}")
        elif rc != 0:
            problems.append(f"{c.name}: SIGTERM -> exit code {rc}, expected 0\n{c.describe()}")
        elif _failed(request):
            print(c.describe())
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def port():
    """A function returning a fresh free port each call."""
    return free_port


@pytest.fixture
def sockdir():
    """A short directory for UNIX sockets (a pytest tmp_path may pass the 108-byte limit
    of sun_path), removed after the test."""
    d = Path(tempfile.mkdtemp(prefix="cr-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def write_config(tmp_path):
    """write_config(text, name="crescent.lua") -> Path of the written file."""

    def write(text, name="crescent.lua"):
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


@pytest.fixture
def crescent(request, tmp_path):
    """crescent(config, ports=[...], env={...}, args=[...]) starts the binary and waits
    until every port in `ports` accepts. `config` is a Path or the text of a config.
    At teardown each instance gets SIGTERM and must exit 0 (nothing leaked under ASan)."""
    started = []

    def start(config, ports=(), env=None, args=(), name=None):
        name = name or f"crescent{len(started) + 1}"
        if not isinstance(config, Path):
            p = tmp_path / f"{name}.lua"
            p.write_text(config)
            config = p
        c = Crescent(config, tmp_path, env=env, args=args, name=name)
        started.append(c)
        c.wait_ready(ports)
        return c

    yield start

    stop_all(started, request)


# ---------------------------------------------------------------------------
# nginx

# The start of every test nginx's config (format with prefix=): no daemon, one worker,
# every path under the instance's prefix. A test adds its http {} contents and "}".
NGINX_HEAD = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
"""

NGINX_CONF = NGINX_HEAD + """
    log_format t '$remote_addr conn=$connection reqs=$connection_requests "$request" '
                 '$status $body_bytes_sent xff="$http_x_forwarded_for"';
    access_log {prefix}/access.log t;
    default_type application/octet-stream;
    keepalive_requests 10000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/html;
        location = /xff {{
            default_type text/plain;
            return 200 "xff=$http_x_forwarded_for\\n";
        }}
        location = /hdr {{
            default_type text/plain;
            return 200 "x-hook=$http_x_hook x-secret=$http_x_secret uri=$uri args=$args\n";
        }}
        location = /host {{
            default_type text/plain;
            return 200 "http_host=$http_host host=$host uri=$request_uri\n";
        }}
        location = /conn {{
            default_type text/plain;
            return 200 "conn=$connection reqs=$connection_requests\\n";
        }}
        location /upload/ {{
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }}
    }}
}}
"""


class Nginx(Process):
    def __init__(self, workdir, port):
        self.prefix = Path(workdir)
        self.port = port
        self.root = self.prefix / "html"
        for d in ("html/upload", "tmp", "logs"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        (self.root / "index.html").write_text("<h1>hello from nginx</h1>\n")
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=self.prefix, port=port))
        super().__init__(
            "nginx",
            ["/usr/sbin/nginx", "-p", self.prefix, "-c", conf, "-e", self.prefix / "error.log"],
            self.prefix,
        )
        self.access_log = self.prefix / "access.log"

    def access_lines(self):
        if not self.access_log.exists():
            return []
        return self.access_log.read_text(errors="replace").splitlines()


@pytest.fixture
def nginx(tmp_path):
    """A real nginx serving tmp_path/nginx/html on a free port (.port, .root), with
    /xff (echoes X-Forwarded-For), /hdr (echoes X-Hook, X-Secret, the URI and the query),
    /conn (its connection id) and PUT under /upload/."""
    n = Nginx(tmp_path / "nginx", free_port())
    try:
        n.wait_ready([n.port])
        yield n
    finally:
        n.stop(signal.SIGQUIT)


class CustomNginx(Process):
    """An nginx whose http {} body is the caller's ("{prefix}" in it: its directory)."""

    def __init__(self, workdir, body, ports):
        self.prefix = Path(workdir)
        for d in ("html", "tmp", "logs"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        # Room for a test's hundreds of concurrent connections.
        head = NGINX_HEAD.format(prefix=self.prefix).replace(
            "worker_connections 1024;", "worker_connections 8192;")
        conf.write_text("worker_rlimit_nofile 16384;\n" + head + body.replace("{prefix}", str(self.prefix))
                        + "\n}\n")
        super().__init__(
            "nginx",
            ["/usr/sbin/nginx", "-p", self.prefix, "-c", conf, "-e", self.prefix / "error.log"],
            self.prefix,
        )
        self.ports = ports


@pytest.fixture
def nginx_with(tmp_path):
    """nginx_with(body, ports) starts an nginx whose http {} block holds `body` (text with
    "{prefix}" for its directory; the caller puts free ports in it) and waits for `ports`."""
    started = []

    def start(body, ports):
        n = CustomNginx(tmp_path / f"nginx{len(started) + 1}", body, ports)
        started.append(n)
        n.wait_ready(ports)
        return n

    yield start
    for n in started:
        n.stop(signal.SIGQUIT)


def self_signed(directory, name):
    """A self-signed certificate for `name` in `directory`: (cert path, key path)."""
    cert, key = Path(directory) / f"{name}.crt", Path(directory) / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
         cert, "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}", "-days", "2"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


# ---------------------------------------------------------------------------
# Redis


class Redis(Process):
    def __init__(self, workdir, port):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        super().__init__(
            "redis",
            ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir, "--protected-mode", "no"],
            self.dir,
        )

    def command(self, *args, timeout=10 * SLOW):
        """Sends one command (RESP) and returns the decoded reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return _resp(f)


def _resp(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        return [_resp(f) for _ in range(int(rest))]
    raise AssertionError(f"bad RESP reply {line!r}")


@pytest.fixture
def redis(tmp_path):
    """A real redis-server (Debian's) on a free port: .port, .command(*args)."""
    r = Redis(tmp_path / "redis", free_port())
    try:
        r.wait_ready([r.port])
        yield r
    finally:
        r.stop()


# ---------------------------------------------------------------------------
# The runtime API


def runtime_command(sock, line, timeout=10 * SLOW):
    """One runtime API command; returns its reply (up to the empty line that ends it).
    The socket appears once the workers serve, a moment after the listening ports accept:
    a connect waits for it (bounded)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)

        def connected():
            try:
                s.connect(str(sock))
                return True
            except (FileNotFoundError, ConnectionRefusedError):
                return False

        wait_until(connected, timeout, f"the runtime socket {sock}")
        s.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode()


def runtime_info(sock):
    """`show info` as a dict."""
    out = runtime_command(sock, "show info")
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


# ---------------------------------------------------------------------------
# MariaDB


class MariaDB(Process):
    USER = "crescent"
    PASSWORD = "crescent-pw"

    def __init__(self, workdir, port):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.socket = self.dir / "mysqld.sock"
        datadir = self.dir / "data"
        # Its own tmpdir: MariaDB names temporary tables after its pid, in /tmp by default.
        tmpdir = self.dir / "tmp"
        tmpdir.mkdir(exist_ok=True)
        env = dict(os.environ, TMPDIR=str(tmpdir))
        r = subprocess.run(
            [
                "mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                "--auth-root-authentication-method=normal", "--skip-test-db",
                f"--tmpdir={tmpdir}",
            ],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert r.returncode == 0, f"mariadb-install-db failed:\n{r.stdout}\n{r.stderr}"
        super().__init__(
            "mariadbd",
            [
                "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}",
                f"--socket={self.socket}", f"--port={port}", "--bind-address=127.0.0.1",
                "--user=root", f"--pid-file={self.dir / 'mysqld.pid'}",
                f"--log-error={self.dir / 'error.log'}", "--skip-log-bin", f"--tmpdir={tmpdir}",
                "--innodb-buffer-pool-size=16M", "--max-allowed-packet=64M",
            ],
            self.dir,
            env={"TMPDIR": tmpdir},
        )

    def admin_sql(self, sql):
        r = subprocess.run(
            ["mariadb", "--no-defaults", "-S", self.socket, "-uroot", "-e", sql],
            capture_output=True, text=True, timeout=30,
        )
        assert r.returncode == 0, f"mariadb -e {sql!r} failed: {r.stderr}"
        return r.stdout


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    """A real MariaDB server on a free port with user crescent/crescent-pw (all grants)."""
    m = MariaDB(tmp_path_factory.mktemp("mariadb"), free_port())
    try:
        m.wait_ready([m.port], timeout=60)
        # mariadbd listens on TCP before its UNIX socket (admin_sql's way in), and serves
        # neither before it logs that it is ready.
        log = m.dir / "error.log"
        wait_until(lambda: log.exists() and "ready for connections" in log.read_text(errors="replace"),
                   60, "mariadbd ready for connections")
        m.admin_sql(
            f"CREATE USER '{m.USER}'@'%' IDENTIFIED BY '{m.PASSWORD}';"
            f"GRANT ALL ON *.* TO '{m.USER}'@'%';"
        )
        yield m
    finally:
        m.stop(signal.SIGTERM, timeout=60)


# ---------------------------------------------------------------------------
# PostgreSQL


class Postgres(Process):
    """A private PostgreSQL cluster (Debian's postgresql) on 127.0.0.1:`port`: data and UNIX
    socket in its own temp dir, superuser `crescent`, trust authentication, no fsync.
    PostgreSQL refuses to run as root: under root the cluster is owned by and runs as the
    `postgres` user (Debian's package makes it), else `nobody`. Its dir is made with
    mkdtemp, not under pytest's tmp dir, whose parent is private to root."""

    USER = "crescent"

    def __init__(self, port):
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="crescent-pg-"))
        self.port = port
        run_as = None
        if os.geteuid() == 0:
            import pwd

            for name in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    continue
                run_as = name
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
                break
        ids = {}
        if run_as:
            import pwd

            pw = pwd.getpwnam(run_as)
            ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        data = self.dir / "data"
        r = subprocess.run(
            [bindir / "initdb", "-D", data, "-U", self.USER, "--auth=trust", "--no-sync",
             "-E", "UTF8", "--no-locale"],
            capture_output=True, text=True, timeout=120, cwd=self.dir, **ids,
        )
        assert r.returncode == 0, f"initdb failed:\n{r.stdout}\n{r.stderr}"
        super().__init__(
            "postgres",
            [bindir / "postgres", "-D", data, "-p", port, "-h", "127.0.0.1", "-k", self.dir,
             "-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=20",
             "-c", "log_connections=off"],
            self.dir,
            user=run_as,
        )

    def createdb(self, name):
        bindir = Path(self.argv[0]).parent
        r = subprocess.run(
            [bindir / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, name],
            capture_output=True, text=True, timeout=60 * SLOW,
        )
        assert r.returncode == 0, f"createdb {name} failed: {r.stderr}"

    def stop(self, sig=signal.SIGINT, timeout=STOP_TIMEOUT * 4):
        """SIGINT: PostgreSQL's fast shutdown."""
        return super().stop(sig, timeout)


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server on a free port (.port, .USER), once per test module."""
    p = Postgres(free_port())
    try:
        p.wait_ready([p.port], timeout=60 * SLOW)
        p.createdb(p.USER)
        yield p
    finally:
        p.stop()
        shutil.rmtree(p.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Log lines on stderr


def wait_log(c, pattern, after=0, timeout=10 * SLOW):
    """Waits for a stderr line of process `c` matching regex `pattern` past offset
    `after`; returns the offset of the match's end (to wait for the next one)."""
    rx = re.compile(pattern)

    def find():
        m = rx.search(c.stderr(), after)
        return m.end() if m else None

    try:
        return wait_until(find, timeout, f"a log line matching {pattern!r}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{c.describe()}") from None


# ---------------------------------------------------------------------------
# WebSocket server (python3-websockets) and a mute TCP server


@pytest.fixture
def ws_server(tmp_path):
    """tests/integration/ws_server.py on a free port (.port): /echo, /silent, /sink, /tick."""
    port = free_port()
    p = Process("ws_server", [PYTHON, HERE / "ws_server.py", port], tmp_path / "ws")
    p.port = port
    try:
        p.wait_ready([port])
        yield p
    finally:
        p.stop()


@pytest.fixture
def mute_server():
    """A listening socket that never accepts: connects succeed, nothing ever answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------------------
# curl


def curl(*args, timeout=60 * SLOW, check=True, input_bytes=None):
    """Runs curl; returns CompletedProcess with .out/.err text. Adds -sS and a time
    limit. input_bytes, if given, is curl's stdin (for "-d @-", "-T -")."""
    r = subprocess.run(
        ["curl", "-sS", "--max-time", str(timeout - 5), *map(str, args)],
        input=input_bytes if input_bytes is not None else b"",
        capture_output=True, timeout=timeout,
    )
    r.out = r.stdout.decode(errors="replace")
    r.err = r.stderr.decode(errors="replace")
    if check:
        assert r.returncode == 0, f"curl {' '.join(map(str, args))} -> {r.returncode}: {r.err}"
    return r


def example_env(**ports):
    """Environment for the examples, with every address on a free port."""
    return {k: addr(v) for k, v in ports.items()}


# ---------------------------------------------------------------------------
# In-process TCP server (threads), for tests that script the server side byte by byte


class TcpServer:
    """Listens on a free port (or on `port`, to come back on the same one after close());
    runs handler(conn) in a thread per connection."""

    def __init__(self, handler, port=0):
        import threading

        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.errors = []
        self.threads = []
        self._closing = False
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self):
        import threading

        while not self._closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, conn):
        try:
            conn.settimeout(30)
            self.handler(conn)
        except Exception as e:  # reported by the test through .errors
            self.errors.append(repr(e))
        finally:
            conn.close()

    def close(self):
        self._closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._accepter.join(timeout=5)
        for t in list(self.threads):
            t.join(timeout=5)


@pytest.fixture
def tcp_server():
    """tcp_server(handler) -> TcpServer (.port, .errors); closed at teardown."""
    servers = []

    def start(handler):
        s = TcpServer(handler)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def read_head(conn):
    """Reads from `conn` until the end of an HTTP head (CRLF CRLF). Returns the bytes read:
    the head and whatever came after it in the same reads, or None when the peer closed
    first."""
    data = b""
    while b"\r\n\r\n" not in data:
        b = conn.recv(65536)
        if not b:
            return None
        data += b
    return data


def request_line(conn):
    """Reads a request head from `conn` (read_head); returns its first line as text, or
    None when the peer closed first."""
    data = read_head(conn)
    return None if data is None else data.split(b"\r\n", 1)[0].decode()


def read_response(sock, pace=None):
    """Reads one HTTP/1.1 response with a Content-Length body from `sock`. Returns
    (status, headers {lowercase name: value}, body bytes), or None when the connection
    ended before the first byte of a response; ConnectionError when it ended inside one.
    `pace`: seconds to wait before each read of the body: a slow client, for tests where
    the time a transfer takes is what is tested."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            if not data:
                return None
            raise ConnectionError(f"connection closed inside a response head: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ConnectionError(f"response without content-length: {head!r}")
    length = int(headers["content-length"])
    while len(body) < length:
        if pace:
            time.sleep(pace)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(body)} of {length} body bytes")
        body += chunk
    if len(body) != length:
        raise ConnectionError(f"{len(body) - length} bytes more than content-length")
    return status, headers, body


def recv_all(sock, timeout=10 * SLOW):
    """Reads until EOF; returns the bytes (raises socket.timeout on timeout)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        b = sock.recv(1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
