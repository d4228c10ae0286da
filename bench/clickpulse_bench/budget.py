"""Section 10: where the 2 cores go under the mixed scenario, per component and per request.

The capacity of section 6 is what the whole box holds: k6, both services (and their span
relays), PostgreSQL, the collector, ClickHouse and the monitor share 2 cores. Here the load
runs at a fixed rate below capacity, and each process's CPU time (user + system, from the
kernel) over a window in its steady phase is divided by the requests answered in the window.
Summed, that is the CPU one request of the mix costs the box; 1,000 req/s needs that sum to be
under 2 ms. The paper estimate of how capacity grows with cores follows from the same figures.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil

from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console
from clickpulse_bench.report import md_table
from clickpulse_bench.self_monitoring import stack_cpu_seconds
from clickpulse_bench.steady_load import SteadyLoad

# Within the section 6 capacity, so nothing is shed and the figures are of served requests.
RATE = 200
RUN_S = 60
WINDOW_S = 30
# The share of each core a component may use before the box counts as full (the rest is the
# kernel's, interrupts, and headroom for p95 < 100 ms): capacity at 2 cores was reached with
# the box ~85 % busy.
USABLE = 0.85


def _k6_cpu_seconds() -> float:
    """CPU seconds of the k6 processes this process started (the steady load's)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() == "k6":
                times = child.cpu_times()
                total += times.user + times.system
    return total


def measure(settings: Settings, rate: float, run_s: int, window_s: int) -> list[dict[str, Any]]:
    load = SteadyLoad(rate, run_s).start()
    time.sleep((run_s - window_s) / 2)
    before, k6_before, started = stack_cpu_seconds(settings), _k6_cpu_seconds(), time.monotonic()
    time.sleep(window_s)
    after, k6_after = stack_cpu_seconds(settings), _k6_cpu_seconds()
    wall = time.monotonic() - started
    result = load.wait()
    achieved = load.sent() / max(result.elapsed_s, 1e-9)
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    used["k6 (the load generator)"] = k6_after - k6_before
    requests = rate * wall
    rows = [
        {
            "component": name,
            "% of a core": round(100 * seconds / wall, 1),
            "CPU ms per request": round(1000 * seconds / requests, 3),
        }
        for name, seconds in sorted(used.items(), key=lambda item: -item[1])
    ]
    total = sum(used.values())
    rows.append(
        {
            "component": "all",
            "% of a core": round(100 * total / wall, 1),
            "CPU ms per request": round(1000 * total / requests, 3),
        }
    )
    console.print(f"  {rate} req/s targeted, {achieved:.1f} req/s sent over the whole run")
    return rows


def estimate(rows: list[dict[str, Any]], cores: int, *, k6_elsewhere: bool) -> int:
    """Requests per second `cores` cores would hold at these costs (a paper estimate: it
    assumes cost per request stays flat, which it does not quite: contention grows with load)."""
    per_request = sum(
        row["CPU ms per request"]
        for row in rows
        if row["component"] != "all" and not (k6_elsewhere and row["component"].startswith("k6"))
    )
    return int(cores * USABLE * 1000 / per_request)


def section(settings: Settings, quick: bool, note: str) -> str:
    rate, run_s, window_s = (50, 30, 12) if quick else (RATE, RUN_S, WINDOW_S)
    rows = measure(settings, rate, run_s, window_s)
    for row in rows:
        console.print(row)
    estimates = [
        {
            "cores": cores,
            "k6 on the same box": estimate(rows, cores, k6_elsewhere=False),
            "k6 on another machine": estimate(rows, cores, k6_elsewhere=True),
        }
        for cores in (2, 4, 8)
    ]
    return (
        "## 10. CPU budget of a request\n\n"
        f"The mixed scenario at {rate} req/s ({run_s} s, below the capacity of section 6), "
        f"each component's CPU time over {window_s} s of its steady phase, per request sent. "
        "Services include their worker processes and span relays.\n\n"
        + md_table(rows)
        + "\n\nPaper estimate of the capacity, in req/s, from these costs: cores x "
        f"{USABLE:.0%} (the share of the box busy at the measured capacity) / CPU ms per "
        "request. It assumes the cost per request stays flat as load grows; on this box it "
        "grows (contention, fewer requests per wake-up), so the measured capacity is lower. "
        "With more cores, the services' worker count grows with them "
        "(`CLICKPULSE_SERVICE_WORKERS`); PostgreSQL and ClickHouse use more cores by "
        "themselves.\n\n" + md_table(estimates) + note
    )
