"""Section 5: a warm `up` and each component's idle memory."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from clickpulse.stack.components import all_components
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console
from clickpulse_bench.report import md_table


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


def section(settings: Settings, quick: bool, note: str) -> str:
    footprint = bench_footprint(settings)
    console.print(footprint)
    return "## 5. Footprint\n\n" + md_table([footprint]) + note
