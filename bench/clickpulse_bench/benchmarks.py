"""`nox -s bench`: ingest throughput and lag, instrumentation overhead, dashboard query
latency on 10M rows, load-generator accuracy, footprint, capacity (old code beside new) and
the CPU budget of a request;
each printed as it finishes and all written to docs/benchmarks.md with the machine, versions
and command. Not tests: nothing here asserts a timing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from clickpulse.stack.settings import Settings
from clickpulse_bench import (
    auth_cost,
    budget,
    capacity,
    dashboards,
    footprint,
    ingest,
    load_accuracy,
    overhead,
    scale_out,
)
from clickpulse_bench.common import console
from clickpulse_bench.dashboards import RAW_TWINS
from clickpulse_bench.report import DOC, versions, write_doc

# tests/test_dashboards.py reads the raw twins from here.
__all__ = ["RAW_TWINS", "main"]

Section = Callable[[Settings, bool, str], str]

# --only name -> (section number in docs/benchmarks.md, title printed, runner), in run order.
SECTIONS: dict[str, tuple[str, str, Section]] = {
    "ingest": ("1", "ingest", ingest.section),
    "overhead": ("2", "instrumentation overhead", overhead.section),
    "dashboards": ("3", "dashboard queries", dashboards.section),
    "load": ("4", "load accuracy", load_accuracy.section),
    "footprint": ("5", "footprint", footprint.section),
    "capacity": ("6", "capacity", capacity.section),
    "auth": ("7", "authentication cost", auth_cost.section),
    "scale": ("8", "scale-out", scale_out.section),
    "budget": ("10", "CPU budget of a request", budget.section),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench --", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller and shorter, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SECTIONS),
        help="run only these (repeatable); the other sections of docs/benchmarks.md are kept",
    )
    args = parser.parse_args(argv)
    wanted = set(args.only or SECTIONS)
    settings = Settings.from_env()
    given = sys.argv[1:] if argv is None else argv
    command = "nox -s bench" + (" -- " + " ".join(given) if given else "")
    note = f"\n\nCommand: `{command}`."
    sections: dict[str, str] = {}
    for name, (number, title, run) in SECTIONS.items():
        if name in wanted:
            console.rule(f"{number}. {title}")
            sections[number] = run(settings, args.quick, note)

    write_doc(command, versions(settings), sections)
    console.print(f"wrote {DOC}")
    return 0
