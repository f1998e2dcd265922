"""The command line: --version, -h, -c on good and bad configs and on every example,
-p PIDFILE, the startup line, and a clean exit on SIGINT/SIGTERM."""

import re
import signal
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import EXAMPLES, SLOW, SOURCE_DIR, addr, free_port, run_crescent, wait_until
from test_tls import Certs

CONFIGS = SOURCE_DIR / "tests" / "configs"
BAD = sorted((CONFIGS / "bad").glob("*.lua"))
GOOD = sorted((CONFIGS / "good").glob("*.lua"))
ALL_EXAMPLES = sorted(EXAMPLES.glob("*.lua"))

# Environment an example needs to load (env.lua requires two variables on purpose).
EXAMPLE_ENV = {
    "ENV_DEMO_ADDR": "127.0.0.1:18080",
    "ENV_DEMO_APP_ADDR": "127.0.0.1:19003",
}


def test_version():
    r = run_crescent(["--version"])
    assert r.returncode == 0, r.stderr
    assert re.match(r"^crescent \d+\.\d+\S*\s*$", r.stdout.splitlines()[0]), r.stdout


def test_help():
    r = run_crescent(["-h"])
    assert r.returncode == 0, r.stderr
    text = r.stdout + r.stderr
    assert re.search(r"usage", text, re.I), text
    for opt in ("-f", "-c", "-p", "--version"):
        assert opt in text, f"-h does not mention {opt}:\n{text}"


def test_unknown_option_fails():
    r = run_crescent(["--no-such-option"])
    assert r.returncode != 0
    assert r.stderr.strip(), "an unknown option must be reported on stderr"


def test_missing_file_fails(tmp_path):
    missing = tmp_path / "nope.lua"
    r = run_crescent(["-c", "-f", missing])
    assert r.returncode == 1
    assert str(missing) in r.stderr, r.stderr


def expectation(path):
    first = path.read_text().splitlines()[0]
    m = re.match(r"^--\s*expect:\s*(.+?)\s*$", first)
    assert m, f"{path}: first line must be '-- expect: <substring>'"
    return m.group(1)


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_check_bad_config(path):
    want = expectation(path)
    r = run_crescent(["-c", "-f", path])
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert re.search(re.escape(str(path)) + r":\d+: ", r.stderr), (
        f"stderr does not name '{path}:<line>: '\n{r.stderr}"
    )
    assert want in r.stderr, f"stderr lacks {want!r}:\n{r.stderr}"


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_check_good_config(path):
    r = run_crescent(["-c", "-f", path])
    assert r.returncode == 0, f"stdout: {r.stdout}\nstderr: {r.stderr}"
    assert "configuration file is valid" in r.stdout + r.stderr


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=[p.name for p in ALL_EXAMPLES])
def test_check_example(path, tmp_path):
    env = dict(EXAMPLE_ENV)
    if path.name == "offload-tls.lua":  # its certificate is loaded by -c too
        env["TLS_CERT"] = Certs(tmp_path).leaf("site", "localhost").path("site.pem")
    r = run_crescent(["-c", "-f", path], env=env)
    assert r.returncode == 0, f"stdout: {r.stdout}\nstderr: {r.stderr}"
    assert "configuration file is valid" in r.stdout + r.stderr


def test_syntax_error_names_file_and_line(tmp_path):
    cfg = tmp_path / "broken.lua"
    cfg.write_text('global { threads = 1 }\n\nfrontend "x" {\n  bind { "127.0.0.1:1" ,\n')
    r = run_crescent(["-c", "-f", cfg])
    assert r.returncode == 1
    assert re.search(re.escape(str(cfg)) + r":\d+: ", r.stderr), r.stderr


def test_run_with_bad_config_exits_1(tmp_path):
    cfg = tmp_path / "bad.lua"
    cfg.write_text('frontend "x" {\n  bind { "127.0.0.1:99999" },\n}\n')
    r = run_crescent(["-f", cfg])
    assert r.returncode == 1, r.stderr
    assert re.search(re.escape(str(cfg)) + r":\d+: ", r.stderr), r.stderr


SIMPLE = """
global {{ threads = 1 }}
listen "hello" {{
  bind {{ "127.0.0.1:{port}" }},
  mode = "http",
  service = function(applet)
    applet:set_status(200)
    applet:add_header("content-type", "text/plain")
    applet:start_response()
    applet:send("hi\\n")
  end,
}}
"""


def test_startup_line_pidfile_and_sigint(crescent, tmp_path):
    port = free_port()
    pidfile = tmp_path / "crescent.pid"
    c = crescent(SIMPLE.format(port=port), ports=[port], args=["-p", pidfile])
    wait_until(pidfile.exists, 5, "the pid file")
    assert pidfile.read_text().strip() == str(c.pid)
    line = wait_until(
        lambda: next((l for l in c.stderr().splitlines() if "ready:" in l), None),
        5,
        "the startup line",
    )
    # A diagnostic line: its UTC date (ISO 8601, ms), the pid, the level, the message.
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z " +
                 rf"crescent\[{c.pid}\]: info: ready: 1 threads?, binds .*{addr(port)}", line)
    assert m, line
    logged = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - logged).total_seconds()) < 60 * SLOW, line
    assert c.stop(signal.SIGINT) == 0, c.describe()


def test_sigterm_exits_0(crescent):
    port = free_port()
    c = crescent(SIMPLE.format(port=port), ports=[port])
    assert c.stop(signal.SIGTERM) == 0, c.describe()


CHECKED = """global {{ threads = 1 }}
defaults {{ mode = "http"{defaults} }}
backend "app" {{{check}
  server "a1" {{ "127.0.0.1:1"{server} }},
}}
backend "svc" {{
  service = function(applet) end,
}}
"""


def check_warnings(r):
    return [l for l in r.stderr.splitlines() if "check settings" in l]


@pytest.mark.parametrize("where", ["backend", "defaults"])
def test_check_settings_no_server_uses_warn(tmp_path, where):
    """Check settings (on the backend or from defaults) that no server of the backend opts
    into draw a warning naming the backend and its file:line; the config stays valid."""
    cfg = tmp_path / "cfg.lua"
    settings = ', check = { inter = "1s" }'
    cfg.write_text(CHECKED.format(defaults=settings if where == "defaults" else "",
                                  check=settings.lstrip(",") + "," if where == "backend" else "",
                                  server=""))
    r = run_crescent(["-c", "-f", cfg])
    assert r.returncode == 0, f"stdout: {r.stdout}\nstderr: {r.stderr}"
    assert "configuration file is valid" in r.stdout, r.stdout
    from_defaults = " (from defaults)" if where == "defaults" else ""
    # One warning: for "app" at its line 3; "svc" (a service, no servers) has none.
    assert check_warnings(r) == [l for l in r.stderr.splitlines() if
                                 l.endswith(f'warning: {cfg}:3: backend "app": check settings'
                                            f'{from_defaults} but no server has check = true')], \
        r.stderr
    assert len(check_warnings(r)) == 1, r.stderr


@pytest.mark.parametrize("server", [", check = true", ', check = { rise = 1 }'])
def test_check_settings_used_by_a_server_no_warning(tmp_path, server):
    cfg = tmp_path / "cfg.lua"
    cfg.write_text(CHECKED.format(defaults="", check=' check = { inter = "1s" },', server=server))
    r = run_crescent(["-c", "-f", cfg])
    assert r.returncode == 0, f"stdout: {r.stdout}\nstderr: {r.stderr}"
    assert check_warnings(r) == [] and "warning" not in r.stderr, r.stderr


def test_check_settings_warning_at_start(crescent):
    """The same warning when crescent starts with such a config, which serves."""
    port = free_port()
    c = crescent(CHECKED.format(defaults="", check=' check = { inter = "1s" },', server="") +
                 f'frontend "f" {{ bind {{ "{addr(port)}" }}, default_backend = "app" }}\n',
                 ports=[port], name="checked")
    line = wait_until(lambda: next((l for l in c.stderr().splitlines()
                                    if "check settings" in l), None), 5 * SLOW, "the warning")
    assert line.endswith(f': warning: {c.config}:3: backend "app": check settings but no '
                         "server has check = true"), line
