"""Accept under a shortage of file descriptors (issue 17 part 5): crescent runs with a
hard RLIMIT_NOFILE of 256, far below what its maxconn needs; 1000 clients connect at
once to an HTTP backend (nginx). Accepting pauses when fds run out (libuv's own accept
loop would accept and close every queued connection: resets) and resumes as sessions
end, so every client gets its response; the pause is logged and counted."""

import asyncio
import resource
import signal
import time

from conftest import (
    CRESCENT_BIN,
    SLOW,
    Process,
    runtime_info,
    wait_until,
)

CLIENTS = 1000
NOFILE = 256


class LimitedCrescent(Process):
    """crescent under `prlimit --nofile=N:N` (soft and hard): it cannot raise it."""

    def __init__(self, config, workdir, nofile):
        super().__init__(
            "crescent",
            ["/usr/bin/prlimit", f"--nofile={nofile}:{nofile}", CRESCENT_BIN, "-f", config],
            workdir,
        )

    def bound_port(self, timeout):
        """The port of the `ready` line (the config binds port 0)."""

        def find():
            for line in self.stderr().splitlines():
                if "ready:" in line and "binds 127.0.0.1:" in line:
                    return int(line.split("binds 127.0.0.1:", 1)[1].split()[0].rstrip(","))
            if not self.running():
                raise AssertionError(f"crescent exited\n{self.describe()}")
            return None

        return wait_until(find, timeout, "the ready line")


async def one_client(port, deadline):
    """One request with Connection: close. Returns "ok", "reset" or what went wrong."""
    loop = asyncio.get_running_loop()
    try:
        left = deadline - loop.time()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=max(left, 0.1)
        )
    except ConnectionResetError:
        return "reset"
    except (asyncio.TimeoutError, OSError) as e:
        return f"connect: {e!r}"
    try:
        writer.write(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        left = deadline - loop.time()
        data = await asyncio.wait_for(reader.read(-1), timeout=max(left, 0.1))
    except ConnectionResetError:
        return "reset"
    except (asyncio.TimeoutError, OSError) as e:
        return f"response: {e!r}"
    finally:
        writer.close()
    if not data.startswith(b"HTTP/1.1 200") or not data.endswith(b"hello\n"):
        return f"bad response: {data[:60]!r}"
    return "ok"


async def many_clients(port, n, seconds):
    deadline = asyncio.get_running_loop().time() + seconds
    return await asyncio.gather(*(one_client(port, deadline) for _ in range(n)))


def test_a_shortage_of_fds_pauses_accepting_and_every_client_is_served(
    nginx, tmp_path, write_config
):
    (nginx.root / "index.html").write_text("hello\n")
    # 1000 client sockets here: the test's own soft limit must allow them.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CLIENTS + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, CLIENTS + 1000), hard))
    sock = tmp_path / "api.sock"
    cfg = write_config(
        f"""
global {{ threads = 2, runtime = {{ socket = "{sock}" }} }}
defaults {{ timeout = {{ connect = "5s", client = "60s", server = "60s", queue = "60s" }} }}
frontend "web" {{
  bind {{ "127.0.0.1:0" }},
  maxconn = 5000,
  default_backend = "app",
}}
backend "app" {{ server "n1" {{ "127.0.0.1:{nginx.port}" }} }}
"""
    )
    c = LimitedCrescent(cfg, tmp_path / "run", NOFILE)
    try:
        port = c.bound_port(15 * SLOW)
        wait_until(lambda: sock.exists(), 10 * SLOW, "the runtime socket")
        assert "hard limit is 256" in c.stderr(), c.describe()

        t0 = time.monotonic()
        results = asyncio.run(many_clients(port, CLIENTS, 90 * SLOW))
        took = time.monotonic() - t0
        failures = [r for r in results if r != "ok"]
        resets = [r for r in failures if r == "reset"]
        assert not resets, f"{len(resets)} resets\n{c.describe()}"
        assert not failures, f"{len(failures)} failed, e.g. {failures[:5]}\n{c.describe()}"

        # The pause was logged (at most once a second per listener) and counted.
        pauses = [l for l in c.stderr().splitlines() if "accept paused" in l]
        assert pauses, c.describe()
        assert "too many open files" in pauses[0], pauses[0]
        assert 'frontend "web": bind 127.0.0.1:0' in pauses[0], pauses[0]
        per_listener = {}
        for line in pauses:
            per_listener.setdefault(line.split(": frontend")[0].split()[-1], []).append(line)
        for lines in per_listener.values():
            assert len(lines) <= took + 2, (took, lines)
        info = wait_until(
            lambda: (lambda i: i if int(i.get("AcceptPauses", 0)) > 0 else None)(
                runtime_info(sock)
            ),
            10 * SLOW,
            "AcceptPauses > 0",
        )
        assert int(info["Ulimit-n"]) == NOFILE
        assert int(info["Maxsock"]) > 2 * 5000
        assert int(info["ListenersLost"]) == 0
    finally:
        rc = c.stop(signal.SIGTERM)
    assert rc == 0, c.describe()
