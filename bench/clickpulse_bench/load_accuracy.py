"""Section 4: how closely `nox -s load` holds its target rate against the whole local stack."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console
from clickpulse_bench.report import md_table


def bench_load_accuracy(rates: list[int], duration: str) -> list[dict[str, Any]]:
    results = []
    for rate in rates:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "clickpulse_load",
                    "--rps",
                    str(rate),
                    "--duration",
                    duration,
                    "--json",
                    str(report),
                ],
                capture_output=True,
                check=False,
                timeout=900,
            )
            facts = json.loads(report.read_text()) if report.exists() else {}
        audit = facts.get("audit", {})
        results.append(
            {
                "target req/s": rate,
                "achieved req/s": round(facts.get("achieved_rps", 0), 1),
                "achieved/target": round(facts.get("achieved_rps", 0) / rate, 3),
                "dropped iterations": facts.get("dropped_iterations"),
                "error rate": round(facts.get("error_rate") or 0, 4),
                "sent": audit.get("sent"),
                "landed": audit.get("landed"),
                "lag p99 s": round(audit.get("lag_p99_s") or 0, 2),
            }
        )
        console.print(f"  {rate} req/s: {results[-1]}")
    return results


def section(settings: Settings, quick: bool, note: str) -> str:
    accuracy = bench_load_accuracy([100] if quick else [100, 500, 1000], "20s" if quick else "60s")
    return (
        "## 4. Load accuracy (`nox -s load` against the whole local stack)\n\n"
        + md_table(accuracy)
        + note
    )
