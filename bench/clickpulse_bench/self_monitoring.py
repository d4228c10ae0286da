"""Part of section 5: what watching itself costs the stack (issue 14's goal: under 2 % of one
core idle, under 2 % of the capacity under load).

Self-monitoring is three things, switched off and on together here: the monitor process
(PostgreSQL sampling, the alert rules' queries), ClickHouse's refreshable view sampling its
system tables (SYSTEM STOP/START VIEW) and the collector's own metrics (restarted with
CLICKPULSE_COLLECTOR_METRICS_LEVEL=none). Windows with it on and off take turns; each measures
the CPU time (user + system, from the kernel) of every process of the stack over the window
(k6 excluded), after a settle time for restarts. The cost is the difference of the means, and
per component, so a busy neighbour on the box moves both sides alike (CPU time, not wall)."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil

from clickpulse.stack.clickhouse_client import admin_client
from clickpulse.stack.components import Collector, Monitor, all_components
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console

VIEW = "ops.clickhouse_samples_refresh"
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
