"""Protocol health checks (check.type = "mysql", "pgsql", "redis", "smtp") and agent checks
through the real binary, against real servers: MariaDB, PostgreSQL and redis-server
(Debian's), a small SMTP server and an agent (Python threads in this process).

Each protocol check: with its real server running the crescent server is UP; the real
server stops -> DOWN within fall x inter (plus slack for a loaded machine); it starts
again -> UP with the protocol's own "check passed" reason. A server answering with the
protocol's error (a login refused, a 421 greeting) is DOWN with that error in the reason.
The agent's words change the weight and state that `show servers state` shows."""

import threading

import pytest

from conftest import (SLOW, TcpServer, addr, free_port, run_crescent, runtime_command,
                      wait_log, wait_until)

INTER_MS = 150
FALL = 2
RISE = 1
# A DOWN must be logged within fall x inter of the real server going away; the slack
# covers the check timeout and a machine busy with other builds.
DOWN_DEADLINE = FALL * INTER_MS / 1000 + 5 * SLOW
UP_DEADLINE = RISE * INTER_MS / 1000 + 10 * SLOW


def proxy_config(sock, port, backend_body):
    return f"""
global {{ threads = 1, runtime = {{ socket = "{sock}" }} }}
defaults {{ mode = "tcp", timeout = {{ connect = "2s", client = "30s", server = "30s" }} }}
frontend "fe" {{ bind {{ "127.0.0.1:{port}" }}, default_backend = "b" }}
backend "b" {{
{backend_body}
}}
"""


def check_table(kind, extra=""):
    return (f'check = {{ type = "{kind}", inter = "{INTER_MS}ms", timeout = "2s", '
            f"rise = {RISE}, fall = {FALL}{extra} }},")


def start_proxy(crescent, tmp_path, backend_body):
    port = free_port()
    sock = tmp_path / "runtime.sock"
    c = crescent(proxy_config(sock, port, backend_body), ports=[port])
    c.sock = sock
    return c


def servers_state(c):
    """`show servers state` as {server: {"state", "admin", "weight"}}."""
    out = runtime_command(c.sock, "show servers state")
    rows = {}
    for line in out.splitlines():
        if not line or line.startswith("#"):
            continue
        f = line.split()
        rows[f[1]] = {"state": f[3], "admin": f[4], "weight": int(f[5])}
    return rows


def wait_state(c, server, timeout=UP_DEADLINE, **want):
    def match():
        row = servers_state(c)[server]
        return row if all(row[k] == v for k, v in want.items()) else None

    try:
        return wait_until(match, timeout, f"server {server} with {want}", interval=0.05)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{servers_state(c)}\n{c.describe()}") from None


def cycle(c, real, pattern_up, server="s1"):
    """Stops the real server: DOWN within the deadline; starts it again: UP with
    `pattern_up` as the reason."""
    assert servers_state(c)[server]["state"] == "UP"
    real.stop()
    end = wait_log(c, rf"server b/{server} is DOWN, reason: Layer4 connection problem",
                   timeout=DOWN_DEADLINE)
    assert servers_state(c)[server]["state"] == "DOWN"
    real.start_again()
    real.wait_ready([real.port], timeout=60 * SLOW)
    wait_log(c, rf"server b/{server} is UP, reason: {pattern_up}", after=end,
             timeout=UP_DEADLINE)
    assert servers_state(c)[server]["state"] == "UP"


# --- MySQL / MariaDB --------------------------------------------------------------------


@pytest.fixture(scope="module")
def mysql_check_user(mariadb):
    """A user that may log in without a password, for the check (HAProxy's advice)."""
    mariadb.admin_sql("CREATE USER IF NOT EXISTS 'haproxy_check'@'%';")
    return "haproxy_check"


def test_mysql_check_logs_in_and_follows_the_server(crescent, tmp_path, mariadb,
                                                     mysql_check_user):
    body = f"""
  {check_table("mysql", f', user = "{mysql_check_user}"')}
  server "s1" {{ "{addr(mariadb.port)}", check = true }},
  server "s2" {{ "{addr(mariadb.port)}", check = {{ user = "no_such_user" }} }},
"""
    c = start_proxy(crescent, tmp_path, body)
    # A login refused by the server is DOWN, with MySQL's error code and text.
    wait_log(c, r"server b/s2 is DOWN, reason: Layer7 wrong status, code: 1045, "
                r'info: "Access denied for user .no_such_user.', timeout=DOWN_DEADLINE)
    wait_state(c, "s1", state="UP")
    # s1's checks logged in and out (COM_QUIT): the server counts no client that went
    # away without saying goodbye.
    aborted = mariadb.admin_sql("SHOW GLOBAL STATUS LIKE 'Aborted_clients'").split()[-1]
    assert aborted == "0", aborted
    cycle(c, mariadb, r'Layer7 check passed, info: "[^"]*MariaDB')


# --- PostgreSQL -------------------------------------------------------------------------


def test_pgsql_check_follows_the_server(crescent, tmp_path, postgres):
    body = f"""
  {check_table("pgsql", f', user = "{postgres.USER}"')}
  server "s1" {{ "{addr(postgres.port)}", check = true }},
  server "s2" {{ "{addr(postgres.port)}", check = {{ user = "no_such_role" }} }},
"""
    c = start_proxy(crescent, tmp_path, body)
    wait_log(c, r'server b/s2 is DOWN, reason: Layer7 wrong status, info: "role "no_such_role" '
                r'does not exist \(SQLSTATE 28000\)"', timeout=DOWN_DEADLINE)
    wait_state(c, "s1", state="UP")
    cycle(c, postgres, r'Layer7 check passed, info: "ready for query"')


# --- Redis ------------------------------------------------------------------------------


def test_redis_check_follows_the_server(crescent, tmp_path, redis):
    body = f"""
  {check_table("redis")}
  server "s1" {{ "{addr(redis.port)}", check = true }},
"""
    c = start_proxy(crescent, tmp_path, body)
    wait_state(c, "s1", state="UP")
    cycle(c, redis, r'Layer7 check passed, info: "\+PONG"')
    # An error reply to PING (here: a password is required) is DOWN with its text.
    redis.command("CONFIG", "SET", "requirepass", "secret")
    wait_log(c, r'server b/s1 is DOWN, reason: Layer7 wrong status, info: "-NOAUTH',
             timeout=DOWN_DEADLINE)


# --- SMTP -------------------------------------------------------------------------------


class SmtpServer:
    """An SMTP greeting server: `greeting` first, then 250 replies (multi-line for EHLO)
    until QUIT. Records the commands it got. stop()/start_again() keep its port."""

    def __init__(self):
        self.greeting = "220 smtp.test ESMTP ready"
        self.commands = []
        self.lock = threading.Lock()
        self.server = TcpServer(self.handle)
        self.port = self.server.port

    def handle(self, conn):
        with self.lock:
            greeting = self.greeting
        conn.sendall(greeting.encode() + b"\r\n")
        f = conn.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.decode().rstrip("\r\n")
            with self.lock:
                self.commands.append(cmd)
            if cmd.upper().startswith("EHLO"):
                conn.sendall(b"250-smtp.test greets you\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif cmd.upper() == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    def seen(self, cmd):
        with self.lock:
            return cmd in self.commands

    def stop(self):
        self.server.close()

    def start_again(self):
        self.server = TcpServer(self.handle, port=self.port)
        return self

    def wait_ready(self, ports, timeout):
        return self


@pytest.fixture
def smtp():
    s = SmtpServer()
    yield s
    s.stop()


def test_smtp_check_follows_the_server(crescent, tmp_path, smtp):
    body = f"""
  {check_table("smtp", ', domain = "check.test"')}
  server "s1" {{ "{addr(smtp.port)}", check = true }},
"""
    c = start_proxy(crescent, tmp_path, body)
    wait_until(lambda: smtp.seen("EHLO check.test") and smtp.seen("QUIT"), UP_DEADLINE,
               "EHLO and QUIT from the check")
    cycle(c, smtp, r"Layer7 check passed, code: 250")
    # A server that greets with 421 (service not available) is DOWN.
    with smtp.lock:
        smtp.greeting = "421 4.3.2 too busy"
    wait_log(c, r'server b/s1 is DOWN, reason: Layer7 wrong status, code: 421, '
                r'info: "4.3.2 too busy"', timeout=DOWN_DEADLINE)


# --- agent checks -----------------------------------------------------------------------


class Agent:
    """An agent-check responder: answers `reply`, then records the line crescent sent
    (agent.send; b"" without one) and closes."""

    def __init__(self):
        self.reply = "up"
        self.received = []
        self.lock = threading.Lock()
        self.server = TcpServer(self.handle)
        self.port = self.server.port

    def handle(self, conn):
        with self.lock:
            reply = self.reply
        conn.sendall(reply.encode() + b"\n")
        line = conn.makefile("rb").readline()
        with self.lock:
            self.received.append(line)

    def say(self, reply):
        with self.lock:
            self.reply = reply

    def close(self):
        self.server.close()


@pytest.fixture
def agent():
    a = Agent()
    yield a
    a.close()


@pytest.fixture
def plain_server():
    """A TCP server that accepts (for the servers' TCP health check)."""
    s = TcpServer(lambda conn: None)
    yield s
    s.close()


def test_agent_sets_weight_state_and_health(crescent, tmp_path, agent, plain_server):
    body = f"""
  check = {{ inter = "{INTER_MS}ms", rise = {RISE}, fall = {FALL} }},
  agent = {{ port = {agent.port}, inter = "100ms", send = "b/s1\\n" }},
  server "s1" {{ "{addr(plain_server.port)}", weight = 10, check = true }},
  server "s2" {{ "{addr(plain_server.port)}", weight = 10, agent = {{ inter = "5s", addr = "127.0.0.1" }} }},
"""
    c = start_proxy(crescent, tmp_path, body)
    wait_until(lambda: b"b/s1\n" in agent.received, UP_DEADLINE, "the agent.send line")

    agent.say("up 50%")
    wait_state(c, "s1", weight=5, state="UP", admin="ready")
    wait_log(c, r'server b/s1 weight 10 -> 5 \(agent says "up 50%"\)')

    agent.say("drain")
    wait_state(c, "s1", admin="drain")
    wait_log(c, r'server b/s1 state ready -> drain \(agent says "drain"\)')
    agent.say("ready 100%")
    wait_state(c, "s1", admin="ready", weight=10)

    agent.say("down #maintenance window")
    wait_state(c, "s1", state="DOWN")
    end = wait_log(c, r'server b/s1 is DOWN, reason: Agent reports DOWN, '
                      r'info: "maintenance window"')
    agent.say("up")
    wait_state(c, "s1", state="UP")
    wait_log(c, r'server b/s1 is UP, reason: Agent reports UP', after=end)

    agent.say("maint")
    wait_state(c, "s1", admin="maint")
    agent.say("ready")
    wait_state(c, "s1", admin="ready")


def test_agent_cannot_bring_up_a_server_its_health_check_says_down(crescent, tmp_path, agent):
    checked = TcpServer(lambda conn: None)
    port = checked.port
    body = f"""
  check = {{ inter = "{INTER_MS}ms", rise = {RISE}, fall = {FALL} }},
  server "s1" {{ "{addr(port)}", check = true, agent = {{ port = {agent.port}, inter = "100ms" }} }},
"""
    c = start_proxy(crescent, tmp_path, body)

    def agent_rounds(n):
        """Waits until the agent has answered n more times."""
        target = len(agent.received) + n
        wait_until(lambda: len(agent.received) >= target, UP_DEADLINE, f"{n} agent checks")

    try:
        agent.say("up")
        wait_state(c, "s1", state="UP")
        checked.close()
        end = wait_log(c, r"server b/s1 is DOWN, reason: Layer4 connection problem",
                       timeout=DOWN_DEADLINE)
        # The agent keeps saying "up": the server stays DOWN, as its check says ...
        agent_rounds(3)
        assert servers_state(c)["s1"]["state"] == "DOWN"
        # ... until the check passes again.
        checked = TcpServer(lambda conn: None, port=port)
        end = wait_log(c, r"server b/s1 is UP, reason: Layer4 check passed", after=end,
                       timeout=UP_DEADLINE)
        # The agent says "stopped": DOWN, though every check passes ...
        agent.say("stopped")
        end = wait_log(c, r"server b/s1 is DOWN, reason: Agent reports DOWN", after=end)
        agent_rounds(3)
        assert servers_state(c)["s1"]["state"] == "DOWN"
        # ... until the agent says "up".
        agent.say("up")
        wait_log(c, r"server b/s1 is UP, reason: Agent reports UP", after=end)
    finally:
        checked.close()


# --- configuration errors ---------------------------------------------------------------


@pytest.mark.parametrize("check, message", [
    ('{ type = "mysql", http = "GET /" }', 'check.type = "mysql" cannot be combined with check.http'),
    ('{ type = "redis", send = "PING\\r\\n" }', 'check.type = "redis" cannot be combined with check.send'),
    ('{ type = "pgsql" }', 'check.type = "pgsql" needs check.user'),
    ('{ type = "smtp", user = "x" }', 'check.user applies to type = "mysql" or "pgsql"'),
    ('{ type = "ftp" }', "check.type"),
])
def test_contradicting_check_keys_are_config_errors(tmp_path, check, message):
    cfg = tmp_path / "bad.lua"
    cfg.write_text(f"""defaults {{ mode = "tcp" }}
frontend "fe" {{ bind {{ "127.0.0.1:{free_port()}" }}, default_backend = "b" }}
backend "b" {{
  server "s1" {{ "127.0.0.1:1", check = {check} }},
}}
""")
    r = run_crescent(["-c", "-f", cfg])
    assert r.returncode != 0
    assert f"{cfg}:4:" in r.stderr, r.stderr
    assert message in r.stderr, r.stderr


def test_agent_without_port_is_a_config_error(tmp_path):
    cfg = tmp_path / "bad.lua"
    cfg.write_text("""defaults { mode = "tcp" }
frontend "fe" { bind { "127.0.0.1:1" }, default_backend = "b" }
backend "b" {
  server "s1" { "127.0.0.1:1", agent = { inter = "1s" } },
}
""")
    r = run_crescent(["-c", "-f", cfg])
    assert r.returncode != 0
    assert f"{cfg}:4:" in r.stderr and "agent.port is required" in r.stderr, r.stderr
