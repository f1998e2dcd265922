"""A start that is not a binary upgrade refuses a bind address another live process
listens on (issue 17, part 3): SO_REUSEPORT would otherwise let two copies split the
traffic, one of them perhaps frozen."""

import socket
import subprocess

import pytest

from conftest import SLOW, addr, can_connect, curl, free_port, run_crescent, wait_until

CONFIG = r"""
global { threads = 1 }
defaults { mode = "http", timeout = { connect = "2s", client = "5s", server = "5s" } }
frontend "public" {
  bind { "%(bind)s" },
  http_request = function(txn) return txn:reply(200, "ok\n") end,
}
"""


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def second_start(write_config, bind, name):
    cfg = write_config(CONFIG % {"bind": bind}, name=name)
    try:
        return run_crescent(["-f", cfg], timeout=15 * SLOW)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a second crescent on {bind} started and kept running") from None


def test_second_start_on_the_same_tcp_address_exits_1(crescent, write_config):
    port = free_port()
    first = crescent(CONFIG % {"bind": addr(port)}, ports=[port])
    r = second_start(write_config, addr(port), "second.lua")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "address in use by another process" in r.stderr, r.stderr
    assert f'frontend "public": bind {addr(port)}' in r.stderr, r.stderr
    assert first.running()
    assert curl(f"http://{addr(port)}/").out == "ok\n"


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_second_start_on_the_same_ipv6_address_exits_1(crescent, write_config):
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    first = crescent(CONFIG % {"bind": f"[::1]:{port}"})
    wait_until(lambda: can_connect(port, host="::1"), 10 * SLOW, "the first crescent on ::1")
    r = second_start(write_config, f"[::1]:{port}", "second.lua")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "address in use by another process" in r.stderr, r.stderr
    assert first.running()


def test_second_start_on_the_same_unix_socket_exits_1(crescent, write_config, sockdir):
    path = sockdir / "in-use.sock"
    first = crescent(CONFIG % {"bind": f"unix:{path}"})
    wait_until(path.exists, 10 * SLOW, "the first crescent's UNIX socket")

    def unix_ok():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5 * SLOW)
            try:
                s.connect(str(path))
            except OSError:
                return False
        return True

    wait_until(unix_ok, 10 * SLOW, "the first crescent accepting on its UNIX socket")
    r = second_start(write_config, f"unix:{path}", "second.lua")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "address in use by another process" in r.stderr, r.stderr
    assert first.running()
    assert path.exists()


def test_start_after_a_stopped_process_binds_again(crescent):
    # The address of a process that has exited (its connections in TIME_WAIT) is free.
    port = free_port()
    first = crescent(CONFIG % {"bind": addr(port)}, ports=[port])
    assert curl(f"http://{addr(port)}/").out == "ok\n"
    assert first.stop() == 0
    second = crescent(CONFIG % {"bind": addr(port)}, ports=[port], name="again")
    assert curl(f"http://{addr(port)}/").out == "ok\n"
    assert second.running()
