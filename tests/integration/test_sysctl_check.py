"""scripts/sysctl-check prints the host's connection limits with a verdict and the way to
change each, and exits 0; without a readable /proc it exits 1. SYSCTL_CHECK_PROC points
it at a fake /proc to check the verdicts on chosen values."""

import os
import re
import subprocess

from conftest import SOURCE_DIR

SCRIPT = SOURCE_DIR / "scripts" / "sysctl-check"


def run(env=None):
    return subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, **(env or {})))


def line_of(out, name):
    for l in out.splitlines():
        if l.startswith(name + " "):
            return l
    raise AssertionError(f"no line for {name}:\n{out}")


def test_prints_this_hosts_ephemeral_range():
    lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
    r = run()
    assert r.returncode == 0, r.stderr
    line = line_of(r.stdout, "net.ipv4.ip_local_port_range")
    assert re.search(rf"\s{lo}-{hi}\s", line), line
    assert f"{int(hi) - int(lo) + 1} ports per source IP and server" in line, line
    for name in ("net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_fin_timeout", "net.core.somaxconn",
                 "fs.file-max", "ulimit -n"):
        line_of(r.stdout, name)
    assert r.stdout.count("change: ") >= 6, r.stdout


def fake_proc(tmp_path, values):
    for path, value in values.items():
        p = tmp_path / "sys" / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(value + "\n")
    return str(tmp_path)


def test_verdicts_on_chosen_values(tmp_path):
    proc = fake_proc(tmp_path, {
        "net/ipv4/ip_local_port_range": "40000\t40099",
        "net/ipv4/tcp_tw_reuse": "0",
        "net/ipv4/tcp_timestamps": "1",
        "net/ipv4/tcp_fin_timeout": "60",
        "net/core/somaxconn": "128",
        "fs/file-max": "100000",
    })
    r = run({"SYSCTL_CHECK_PROC": proc})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "narrow: 100 ports per source IP and server" in line_of(out, "net.ipv4.ip_local_port_range")
    assert "off:" in line_of(out, "net.ipv4.tcp_tw_reuse")
    assert "sysctl -w net.ipv4.tcp_tw_reuse=1" in out
    assert "low:" in line_of(out, "net.core.somaxconn")
    assert "sysctl -w net.core.somaxconn=4096" in out
    assert "low" in line_of(out, "fs.file-max")


def test_unreadable_proc_exits_1(tmp_path):
    r = run({"SYSCTL_CHECK_PROC": str(tmp_path / "nothing")})
    assert r.returncode == 1
    assert "cannot read" in r.stderr
