"""Part of section 5: what watching itself costs the stack (issue 14's goal: under 2 % of one
core idle, under 2 % of the capacity under load).

Self-monitoring is three things: the monitor process (PostgreSQL sampling, the alert rules'
queries), ClickHouse's refreshable view sampling its system tables and the collector's own
metrics. Two measurements:

- `measure`: all three switched off (monitor stopped, SYSTEM STOP VIEW, the collector restarted
  with CLICKPULSE_COLLECTOR_METRICS_LEVEL=none) and on, in alternating windows; each measures
  the CPU time (user + system, from the kernel) of every process of the stack over the window.
  Precise idle; under load ClickHouse's merges alone vary by ±3 % of a core from one 40 s
  window to the next, more than the cost.
- `attribute`: each piece of work timed on its own, in short bursts (ten times back to back,
  less what the process uses anyway over the same wall time), times how often the monitor or
  ClickHouse does it; under load too, since the rules read the requests of the last minutes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil

from clickpulse.stack.clickhouse_client import admin_client
from clickpulse.stack.components import ClickHouse, Collector, Monitor, Postgres, all_components
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console

VIEW = "ops.clickhouse_samples_refresh"
# REFRESH EVERY 15 SECOND (clickhouse/migrations/0011_ops_clickhouse_samples.sql).
REFRESH_INTERVAL_S = 15.0
SETTLE_S = 10.0


def stack_cpu_seconds(settings: Settings) -> dict[str, float]:
    """CPU seconds used so far by each component's processes (children included)."""
    seconds: dict[str, float] = {}
    for component in all_components(settings):
        proc = component.process.running()
        if proc is None:
            continue
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        seconds[component.name] = total
    return seconds


def _restart_collector(settings: Settings, level: str) -> None:
    saved = os.environ.get("CLICKPULSE_COLLECTOR_METRICS_LEVEL")
    os.environ["CLICKPULSE_COLLECTOR_METRICS_LEVEL"] = level
    try:
        collector = Collector(settings)
        collector.process.stop()
        collector.process.start()
    finally:
        if saved is None:
            os.environ.pop("CLICKPULSE_COLLECTOR_METRICS_LEVEL", None)
        else:
            os.environ["CLICKPULSE_COLLECTOR_METRICS_LEVEL"] = saved


def switch(settings: Settings, on: bool) -> None:
    monitor = Monitor(settings)
    admin = admin_client(settings)
    if on:
        _restart_collector(settings, "normal")
        admin.command(f"SYSTEM START VIEW {VIEW}")
        if monitor.process.running() is None:
            monitor.process.start()
    else:
        monitor.process.stop()
        admin.command(f"SYSTEM STOP VIEW {VIEW}")
        _restart_collector(settings, "none")
    time.sleep(SETTLE_S)


@contextlib.contextmanager
def _load(rps: int, duration_s: int) -> Iterator[None]:
    """k6 in the background at `rps` for the window (its own CPU is not the stack's)."""
    if rps == 0:
        yield
        return
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clickpulse_load",
            "--rps",
            str(rps),
            "--duration",
            f"{duration_s + 10}s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(8)  # seeding and ramp-up happen before the window
        yield
    finally:
        proc.terminate()
        proc.wait(120)


def measure(settings: Settings, *, rps: int, window_s: int, pairs: int) -> dict[str, Any]:
    """CPU per second of the stack with self-monitoring on and off, in alternating windows."""
    samples: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    try:
        for index in range(pairs * 2):
            on = index % 2 == 0
            switch(settings, on)
            with _load(rps, window_s):
                before = stack_cpu_seconds(settings)
                time.sleep(window_s)
                after = stack_cpu_seconds(settings)
            used = {k: (after[k] - before.get(k, 0.0)) / window_s for k in after}
            samples[on].append(used)
            parts = ", ".join(f"{k} {v:.3f}" for k, v in used.items())
            console.print(
                f"  {rps} req/s, self-monitoring {'on ' if on else 'off'}: "
                f"{sum(used.values()):.3f} cores ({parts})"
            )
    finally:
        switch(settings, True)
    names = sorted({k for window in samples[True] for k in window})

    def mean(on: bool, name: str | None = None) -> float:
        return statistics.mean(
            sum(w.values()) if name is None else w.get(name, 0.0) for w in samples[on]
        )

    total_on, total_off = mean(True), mean(False)
    # The services do nothing different with self-monitoring off: their difference is the
    # load's own variance (±2-3 % of a core at 200 req/s), so the cost is counted where
    # self-monitoring runs: the monitor, and the difference in ClickHouse, the collector and
    # PostgreSQL.
    deltas = {
        name: mean(True, name) - mean(False, name)
        for name in ("clickhouse", "collector", "postgres")
        if name in names
    }
    cost = mean(True, "monitor") + sum(deltas.values())
    return {
        "load req/s": rps,
        "stack cores, on": round(total_on, 3),
        "stack cores, off": round(total_off, 3),
        "cost, % of a core": round(100 * cost, 2),
        "cost, % of the stack's CPU": round(100 * cost / total_on, 2),
        "monitor process": round(100 * mean(True, "monitor"), 2),
        **{f"{name} +": round(100 * delta, 2) for name, delta in deltas.items()},
        "whole stack +, % of a core": round(100 * (total_on - total_off), 2),
    }


def _cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def _burst(proc: psutil.Process, work: Callable[[], object], times: int) -> float:
    """CPU seconds `proc` spends on one `work()`, less its background rate meanwhile."""
    start, wall = _cpu(proc), time.monotonic()
    time.sleep(2)
    background = (_cpu(proc) - start) / (time.monotonic() - wall)
    start, wall = _cpu(proc), time.monotonic()
    for _ in range(times):
        work()
    used = _cpu(proc) - start - background * (time.monotonic() - wall)
    return max(used, 0.0) / times


def attribute(settings: Settings, *, rps: int, times: int = 10) -> dict[str, Any]:
    """Each part's cost, in % of a core, at the pace the stack does it."""
    from clickpulse.monitoring.clickhouse_query import ClickHouseQuery
    from clickpulse.monitoring.evaluation import observe
    from clickpulse.monitoring.monitor import POSTGRES_INTERVAL_S
    from clickpulse.monitoring.postgres_stats import PostgresSampler
    from clickpulse.monitoring.rules import GROUPS, RULES

    clickhouse = ClickHouse(settings).process.running()
    postgres = Postgres(settings).process.running()
    monitor = Monitor(settings).process.running()
    assert clickhouse and postgres and monitor, "the stack must be up: nox -s up"
    admin = admin_client(settings)
    query = ClickHouseQuery(settings)
    row: dict[str, Any] = {"load req/s": rps}
    with _load(rps, 120):

        def refresh() -> None:
            admin.command(f"SYSTEM REFRESH VIEW {VIEW}")
            admin.command(f"SYSTEM WAIT VIEW {VIEW}")

        refresh_s = _burst(clickhouse, refresh, times)
        row["ClickHouse sampling itself"] = round(100 * refresh_s / REFRESH_INTERVAL_S, 2)
        rules_cost = 0.0
        for group in GROUPS:
            rules = [r for r in RULES if r.group == group]

            def one_round(rules: list[Any] = rules) -> None:
                for r in rules:
                    observe(r, query, time.time())

            rules_cost += _burst(clickhouse, one_round, times) / group.interval_s
        row["ClickHouse answering the rules"] = round(100 * rules_cost, 2)
        sampler = PostgresSampler(settings.pg_monitor_dsn)
        loop = asyncio.new_event_loop()  # one loop: the sampler keeps its connection
        try:
            postgres_s = _burst(postgres, lambda: loop.run_until_complete(sampler.sample()), times)
            loop.run_until_complete(sampler.close())
        finally:
            loop.close()
        row["PostgreSQL answering the samples"] = round(100 * postgres_s / POSTGRES_INTERVAL_S, 2)
        start, wall = _cpu(monitor), time.monotonic()
        time.sleep(30)
        row["monitor process"] = round(100 * (_cpu(monitor) - start) / (time.monotonic() - wall), 2)
    row["sum, % of a core"] = round(sum(v for k, v in row.items() if k not in ("load req/s",)), 2)
    return row
