"""What every benchmark shares: the console, free ports and the k6 binary."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from rich.console import Console

from clickpulse.stack.settings import REPO_ROOT

console = Console()
BENCH_DIR = REPO_ROOT / "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def k6_binary() -> str:
    return str(Path(sys.executable).with_name("k6"))
