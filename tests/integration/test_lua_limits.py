"""The limits of a Lua state (issue 17, part 4): `global { lua = { maxmem, budget,
max_timers } }`. An allocation past maxmem fails its hook at once (500, a log line) and
the worker goes on serving; the time budget is configurable; show info counts both."""

import os
import time

from conftest import SLOW, addr, curl, free_port, runtime_info, wait_until

CONFIG = r"""
global {
  threads = 1,
  runtime = { socket = "%(sock)s" },
  lua = { maxmem = "64m", budget = "%(budget)s", max_timers = 3 },
}
defaults { mode = "http", timeout = { connect = "2s", client = "10s", server = "10s" } }

frontend "public" {
  bind { "%(bind)s" },
  http_request = function(txn)
    local p = txn.req.path
    if p == "/big" then
      local s = string.rep("x", 2^30)
      return txn:reply(200, "allocated " .. #s .. "\n")
    elseif p == "/grow" then
      local t = {}
      for i = 1, 1e9 do t[i] = string.rep("y", 1000) .. i end
      return txn:reply(200, "grew\n")
    elseif p == "/spin" then
      while true do end
    elseif p == "/timers" then
      local made, err = 0, nil
      for i = 1, 5 do
        local ok, e = crescent.timer.at(60000, function() end)
        if not ok then err = e break end
        made = made + 1
      end
      return txn:reply(200, made .. " " .. tostring(err) .. "\n")
    end
    return txn:reply(200, "ok\n")
  end,
}
"""


def start(crescent, sockdir, budget="300ms"):
    port = free_port()
    sock = sockdir / "rt.sock"
    c = crescent(CONFIG % {"bind": addr(port), "sock": sock, "budget": budget}, ports=[port])
    c.url = f"http://{addr(port)}"
    c.sock = sock
    return c


def code_and_time(url, timeout=30 * SLOW):
    r = curl("-o", os.devnull, "-w", "%{http_code} %{time_total}", url, timeout=timeout)
    code, elapsed = r.out.split()
    return code, float(elapsed)


def test_allocation_past_maxmem_fails_the_hook_at_once(crescent, sockdir):
    c = start(crescent, sockdir)
    code, elapsed = code_and_time(f"{c.url}/big")
    assert code == "500", c.describe()
    # Refused before anything is allocated: no 9.8 s spent filling 1 GB.
    assert elapsed < 2 * SLOW, f"the refusal took {elapsed}s"
    wait_until(lambda: "Lua memory limit reached" in c.stderr(), 5 * SLOW,
               "the memory limit log line")
    assert "global.lua.maxmem" in c.stderr()
    # The worker keeps serving, and the state is usable.
    assert curl(f"{c.url}/hello").out == "ok\n"
    info = runtime_info(c.sock)
    assert int(info["LuaMemLimitHits"]) >= 1, info
    assert int(info["Worker1_LuaMemLimitHits"]) >= 1, info
    assert int(info["LuaMemLimitKB"]) == 64 * 1024, info
    assert 0 < int(info["Worker1_LuaMemKB"]) < 64 * 1024, info


def test_growing_table_stops_at_maxmem(crescent, sockdir):
    # Many small allocations: cut by the cap (64 MB) long before the time budget ends,
    # and the memory is given back once the failed call's garbage is collected.
    c = start(crescent, sockdir, budget="20s")
    code, elapsed = code_and_time(f"{c.url}/grow")
    assert code == "500", c.describe()
    assert elapsed < 15 * SLOW, elapsed
    assert "Lua memory limit reached" in c.stderr()
    assert curl(f"{c.url}/hello").out == "ok\n"
    info = runtime_info(c.sock)
    assert int(info["Worker1_LuaMemLimitHits"]) >= 1, info


def test_configured_budget_cuts_a_loop(crescent, sockdir):
    c = start(crescent, sockdir, budget="300ms")
    t0 = time.monotonic()
    code, elapsed = code_and_time(f"{c.url}/spin")
    assert code == "500", c.describe()
    # The default budget is 1 s: a cut well before it is the configured one.
    assert elapsed < 0.9 or SLOW > 1, f"cut after {elapsed}s; the budget is 300 ms"
    assert time.monotonic() - t0 < 10 * SLOW
    wait_until(lambda: "exceeded its time budget (300 ms)" in c.stderr(), 5 * SLOW,
               "the budget log line")
    assert curl(f"{c.url}/hello").out == "ok\n"


def test_max_timers_is_configurable(crescent, sockdir):
    c = start(crescent, sockdir)
    r = curl(f"{c.url}/timers")
    assert r.out == "3 too many pending timers (3, global.lua.max_timers)\n", r.out
