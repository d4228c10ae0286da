"""Section 5: a warm `up`, each component's idle memory, and what self-monitoring costs idle
and under load (self_monitoring)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from clickpulse.stack.components import all_components
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console
from clickpulse_bench.report import md_table
from clickpulse_bench.self_monitoring import attribute, measure


def bench_footprint(settings: Settings) -> dict[str, Any]:
    stack = [sys.executable, "-m", "clickpulse.stack"]
    subprocess.run([*stack, "down"], check=True, capture_output=True)
    started = time.monotonic()
    subprocess.run([*stack, "up"], check=True, capture_output=True)
    up_s = time.monotonic() - started
    time.sleep(15)
    rss = {}
    for component in all_components(settings):
        proc = component.process.running()
        if proc is None:
            continue
        family = [proc, *proc.children(recursive=True)]
        rss[component.name] = round(
            sum(p.memory_info().rss for p in family if p.is_running()) / 2**20
        )
    return {
        "warm `nox -s up` seconds": round(up_s, 1),
        **{f"idle RSS MiB {k}": v for k, v in rss.items()},
    }


# The load for the "under load" windows: two thirds of the 300 req/s capacity (section 6).
LOADED_RPS = 200


def section(settings: Settings, quick: bool, note: str) -> str:
    footprint = bench_footprint(settings)
    console.print(footprint)
    window, pairs = (20, 1) if quick else (60, 2)
    switched = [
        measure(settings, rps=0, window_s=window, pairs=pairs),
        measure(settings, rps=LOADED_RPS, window_s=window, pairs=pairs),
    ]
    console.print(switched)
    parts = [attribute(settings, rps=0), attribute(settings, rps=LOADED_RPS)]
    console.print(parts)
    idle, loaded = switched
    # Beyond the parts timed one by one: the self-metrics' own inserts and merges in ClickHouse
    # and the collector's bookkeeping, which do not grow with the load (measured idle).
    residual = max(0.0, idle["cost, % of a core"] - parts[0]["sum, % of a core"])
    under_load = parts[1]["sum, % of a core"] + residual
    share = 100 * (under_load / 100) / loaded["stack cores, on"]
    verdict = (
        f"Idle, self-monitoring costs {idle['cost, % of a core']:.1f} % of a core (switched off"
        f" and on). At {LOADED_RPS} req/s the parts timed one by one add up to"
        f" {parts[1]['sum, % of a core']:.1f} %, and with what the idle measurement shows"
        f" beyond them ({residual:.1f} %: the self-metrics' inserts and merges, the collector's"
        f" bookkeeping) {under_load:.1f} % of a core, {share:.1f} % of the stack's CPU at that"
        " rate."
    )
    console.print(verdict)
    return (
        "## 5. Footprint\n\n"
        + md_table([footprint])
        + "\n\n### Self-monitoring\n\nThe monitor process, ClickHouse's refreshable view"
        " sampling its system tables every 15 s, and the collector's own metrics every 10 s."
        f" Switched off and on in turns of {window} s ({pairs} pair(s)), idle and at"
        f" {LOADED_RPS} req/s; CPU time of every process of the stack (k6 excluded), in % of one"
        " core. The cost is the monitor's own CPU plus what ClickHouse, the collector and"
        " PostgreSQL used more with it on (the services do nothing different; the whole"
        " stack's difference, last column, adds the load's own variance):\n\n"
        + md_table(switched)
        + "\n\nEach part timed on its own (ten times back to back, less the process's"
        " background rate over the same time), at the pace the stack does it, in % of a"
        " core:\n\n"
        + md_table(parts)
        + "\n\n"
        + verdict
        + " The goals: under 2 % of a core idle, under 2 % of the stack's CPU under load."
        + note
    )
