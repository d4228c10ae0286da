"""docs/benchmarks.md: the machine and versions, markdown tables, and the file itself."""

from __future__ import annotations

import platform
import re
import subprocess
from datetime import UTC, datetime
from typing import Any

import psutil

from clickpulse.stack.clickhouse_client import reader_client
from clickpulse.stack.settings import REPO_ROOT, Settings
from clickpulse_bench.common import k6_binary

DOC = REPO_ROOT / "docs" / "benchmarks.md"


def versions(settings: Settings) -> dict[str, str]:
    k6 = subprocess.run([k6_binary(), "version"], capture_output=True, text=True).stdout.strip()
    return {
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}",
        "ClickHouse": str(reader_client(settings).query("SELECT version()").result_rows[0][0]),
        "collector": "clickpulse-otelcol 0.165.0 (otel-collector/builder-config.yaml)",
        "k6": k6.splitlines()[0] if k6 else "?",
        "Python": platform.python_version(),
    }


def md_table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_doc(command: str, versions: dict[str, str], sections: dict[str, str]) -> None:
    """Writes docs/benchmarks.md; with --only, the other sections of the file are kept."""
    kept: dict[str, str] = {}
    if DOC.exists():
        for chunk in re.split(r"\n(?=## \d+\. )", DOC.read_text()):
            match = re.match(r"## (\d+)\. ", chunk)
            if match:
                kept[match.group(1)] = chunk.strip()
    kept.update(sections)
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(
        "# Benchmarks\n\nEvery component runs on the same machine. Last run: `"
        + command
        + "` on "
        + datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        + " (each section names its own command when it was run alone).\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in versions.items())
        + "\n\n"
        + "\n\n".join(kept[k] for k in sorted(kept, key=int))
        + "\n"
    )
