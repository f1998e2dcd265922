"""TCP mode: examples/tcp-mysql.lua in front of a real MariaDB, driven by its own client."""

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import EXAMPLES, SLOW, addr, free_port


@pytest.fixture
def proxy(crescent, mariadb):
    port = free_port()
    env = {"CRESCENT_ADDR": addr(port), "MARIADB_ADDR": addr(mariadb.port)}
    c = crescent(EXAMPLES / "tcp-mysql.lua", ports=[port], env=env)
    c.port = port
    c.db = mariadb
    return c


def sql(proxy, statements, database=None):
    argv = [
        "mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(proxy.port), "--protocol=TCP",
        f"-u{proxy.db.USER}", f"-p{proxy.db.PASSWORD}", "--batch", "--skip-column-names",
        "--connect-timeout=10", "--max-allowed-packet=64M",
    ]
    if database:
        argv.append(database)
    # Statements on stdin: a command-line argument is limited to 128 KiB.
    r = subprocess.run(argv, input=statements, capture_output=True, text=True,
                       timeout=60 * SLOW)
    assert r.returncode == 0, f"mariadb client failed: {r.stderr}"
    return r.stdout


def test_queries_through_proxy(proxy):
    assert sql(proxy, "SELECT 1+1").strip() == "2"
    sql(proxy, "CREATE DATABASE IF NOT EXISTS t1; CREATE TABLE t1.kv (k INT PRIMARY KEY, v TEXT)")
    rows = ",".join(f"({i}, 'value {i}')" for i in range(1000))
    sql(proxy, f"INSERT INTO kv VALUES {rows}", database="t1")
    assert sql(proxy, "SELECT COUNT(*), SUM(k) FROM kv", database="t1").split() == ["1000", "499500"]
    # A large result and a large statement (several MB each way through the tunnel).
    assert sql(proxy, "SELECT LENGTH(REPEAT('x', 8000000))").strip() == "8000000"
    out = sql(proxy, "SELECT REPEAT('ab', 2000000)")
    assert out.strip() == "ab" * 2000000
    big = "y" * 3000000
    assert sql(proxy, f"SELECT LENGTH('{big}')").strip() == "3000000"


def test_concurrent_clients(proxy):
    def one(i):
        return sql(proxy, f"SELECT {i} * 2, SLEEP(0.2)").split()[0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert results == [str(i * 2) for i in range(16)]


def test_tcplog_line(proxy):
    sql(proxy, "SELECT 'logged'")
    d = proxy.wait_tcp_log(lambda d: True, what="a tcplog line for the session")
    assert (d["frontend"], d["backend"], d["server"]) == ("mysql", "db", "db1"), d
    assert d["client"] == "127.0.0.1"
    assert d["state"] == "--", d
    assert int(d["bytes"].lstrip("+")) > 0, d
    assert int(d["Tt"].lstrip("+")) >= 0, d
