"""What every benchmark shares: the console, free ports and the k6 binary (the load
runner's)."""

from __future__ import annotations

import socket

from clickpulse_load.k6 import k6_binary
from rich.console import Console

from clickpulse.stack.settings import REPO_ROOT

console = Console()
BENCH_DIR = REPO_ROOT / "bench"

__all__ = ["BENCH_DIR", "console", "free_port", "k6_binary"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
