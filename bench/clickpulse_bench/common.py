"""What every benchmark shares: the console, free ports, and the k6 binary and the environment
it runs in (the load runner's)."""

from __future__ import annotations

from clickpulse_load.k6 import k6_binary, k6_environment
from rich.console import Console

from clickpulse.stack.processes import free_port
from clickpulse.stack.settings import REPO_ROOT

console = Console()
BENCH_DIR = REPO_ROOT / "bench"

__all__ = ["BENCH_DIR", "console", "free_port", "k6_binary", "k6_environment"]
