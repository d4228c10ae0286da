"""The monitor's heartbeat: its pid and the time of its last evaluation round, in a file, so
`nox -s status` can tell a monitor that evaluates from one that hangs (or a file left behind)."""

from __future__ import annotations

import os
import time
from pathlib import Path

HEARTBEAT_FILE = "heartbeat"


def beat(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{HEARTBEAT_FILE}.tmp"
    tmp.write_text(f"{os.getpid()} {time.time():.3f}\n")
    tmp.replace(directory / HEARTBEAT_FILE)


def age(directory: Path, pid: int | None = None) -> float | None:
    """Seconds since the last beat (of process `pid`, if given); None when there is none."""
    try:
        beat_pid, at = (directory / HEARTBEAT_FILE).read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    if pid is not None and int(beat_pid) != pid:
        return None
    return time.time() - float(at)
