"""A worker that cannot freeze silently (issue 17, part 3): a hook stuck inside one C
call (a catastrophic gsub) is beyond the time budget; the watchdog reports it, naming
the hook, and aborts the process (or only logs, with on_stuck = "log"); a stop finishes
by hard_stop_after even with that worker stuck."""

import re
import signal
import socket
import time

import pytest

from conftest import SLOW, Crescent, addr, free_port, wait_until

CONFIG = r"""
global {
  threads = 1,
  watchdog = "%(watchdog)s",
  on_stuck = "%(on_stuck)s",
  hard_stop_after = "%(hsa)s",
}
defaults { mode = "http", timeout = { connect = "2s", client = "30s", server = "30s" } }

frontend "public" {
  bind { "%(bind)s" },
  http_request = function(txn)
    if txn.req.path == "/stuck" then
      local s = ("a"):rep(2^24):gsub("a*a*a*a*b", "")
    end
    return txn:reply(200, "ok\n")
  end,
}
"""

WATCHDOG_S = 1.0


@pytest.fixture
def start(tmp_path):
    """start(on_stuck, hsa) -> a running Crescent (not the shared fixture: these
    processes are meant to die with a non-zero status). Killed at teardown if alive."""
    started = []

    def run(on_stuck="abort", hsa="0"):
        port = free_port()
        cfg = tmp_path / f"wd{len(started)}.lua"
        cfg.write_text(CONFIG % {"bind": addr(port), "watchdog": f"{int(WATCHDOG_S * 1000)}ms",
                                 "on_stuck": on_stuck, "hsa": hsa})
        c = Crescent(cfg, tmp_path, name=f"wd{len(started)}")
        started.append(c)
        c.wait_ready([port])
        c.port = port
        c.cfg = cfg
        return c

    yield run
    for c in started:
        if c.running():
            c.proc.kill()
            c.proc.wait(timeout=10)
        c.stop()


def send_stuck_request(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    s.sendall(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
    return s


def exit_code_within(c, seconds):
    try:
        return c.proc.wait(timeout=seconds)
    except Exception:
        raise AssertionError(f"still running after {seconds}s\n{c.describe()}") from None


def test_stuck_worker_is_reported_and_the_process_aborts(start):
    c = start(on_stuck="abort")
    s = send_stuck_request(c.port)
    try:
        t0 = time.monotonic()
        rc = exit_code_within(c, 2 * WATCHDOG_S * SLOW + 1)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert rc != 0, c.describe()
    err = c.stderr()
    assert "watchdog: worker 1 is stuck" in err, c.describe()
    # Names the hook and where its function is defined (line 12 of the script).
    assert re.search(r"running http_request hook \(function defined at \S*" +
                     re.escape(c.cfg.name) + r":12\)", err), c.describe()
    assert "backtrace of the stuck thread" in err, c.describe()
    assert "aborting the process" in err, c.describe()
    assert took <= 2 * WATCHDOG_S * SLOW + 1, took


def test_on_stuck_log_reports_and_hard_stop_after_ends_the_stop(start):
    c = start(on_stuck="log", hsa="1500ms")
    s = send_stuck_request(c.port)
    try:
        wait_until(lambda: "watchdog: worker 1 is stuck" in c.stderr(), 2 * WATCHDOG_S * SLOW,
                   "the watchdog line")
        assert "left running (on_stuck = \"log\")" in c.stderr() or wait_until(
            lambda: "left running" in c.stderr(), 2 * SLOW, "the log-only line")
        assert c.running(), c.describe()
        assert "http_request hook" in c.stderr()
        # The worker never comes back; SIGTERM still ends the process by hard_stop_after.
        t0 = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        rc = exit_code_within(c, 1.5 + 0.5 + 2 * SLOW)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert rc == 1, c.describe()
    assert took >= 1.4, took
    assert "hard_stop_after (1500 ms) reached" in c.stderr(), c.describe()
    assert "worker 1 (running http_request hook" in c.stderr(), c.describe()


def test_soft_stop_with_a_stuck_worker_ends_by_hard_stop_after(start):
    c = start(on_stuck="log", hsa="1s")
    s = send_stuck_request(c.port)
    try:
        wait_until(lambda: "watchdog: worker 1 is stuck" in c.stderr(), 2 * WATCHDOG_S * SLOW,
                   "the watchdog line")
        c.proc.send_signal(signal.SIGUSR1)
        exit_code_within(c, 1 + 0.5 + 2 * SLOW)
    finally:
        s.close()
    assert "hard_stop_after (1000 ms) reached" in c.stderr(), c.describe()
