"""`nox -s drills`: faults under a steady load, counting what k6 sent against what landed, and
what the monitor told meanwhile (its alert timeline, beside the counts).

1. kill -9 the collector, restart it 10 s later: spans held by the services' SDK exporters
   (retrying) and the collector's persistent queue must all arrive. (Too short to page:
   "Collector unreachable" waits for 40 s of silence.)
2. stop ClickHouse for 60 s: the collector's file-backed sending queue delivers afterwards;
   "ClickHouse unreachable" fires within 60 s, the queue backlog too (read from the collector
   while ClickHouse cannot record it), and both resolve once it is back.
3. stop PostgreSQL for 60 s: the services answer 503 with a clear body (never 500) and recover
   by themselves; the 5xx share fires within 2 minutes and resolves.

Every drill waits for its alerts to resolve before the next starts. The results, with the
timelines, go to docs/benchmarks.md (section 9).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from clickpulse_load.audit import Audit, audit_run
from rich.console import Console
from rich.table import Table

from clickpulse.stack.components import ClickHouse, Collector, Component, Postgres
from clickpulse.stack.settings import Settings
from clickpulse_bench.alert_timeline import (
    Expected,
    Timeline,
    judge,
    require_monitor,
    wait_until_resolved,
)
from clickpulse_bench.report import md_table, versions, write_doc
from clickpulse_bench.steady_load import SteadyLoad

console = Console()


# How long after a fault's end its alerts may take to resolve: the longest window (60 s) and
# `for`, two evaluation intervals, and the backlog landing.
RESOLVE_TIMEOUT_S = 180
CLICKHOUSE_OUTAGE_S = 60
POSTGRES_OUTAGE_S = 60


@dataclass
class DrillResult:
    name: str
    audit: Audit
    notes: list[str] = field(default_factory=list)
    ok: bool = True
    timeline: Timeline | None = None


@dataclass
class Fault:
    """When the load started, and when the fault began and ended (epoch seconds)."""

    load_started: float = 0.0
    began: float = 0.0
    ended: float = 0.0


def _wait_healthy(component: Component, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not component.process.healthy():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{component.name} did not come back")
        time.sleep(0.2)


def _outage(
    load: SteadyLoad, component: Component, *, at_s: float, for_s: float, kill: bool
) -> Fault:
    fault = Fault(load_started=time.time() - load.elapsed())
    while load.elapsed() < at_s:
        time.sleep(0.1)
    if component.process.running() is None:
        raise RuntimeError(f"{component.name} is not running: start the stack with `nox -s up`")
    fault.began = time.time()
    if kill:
        component.process.kill()
    else:
        component.process.stop()
    console.print(f"  {component.name} {'killed' if kill else 'stopped'} at {load.elapsed():.0f}s")
    time.sleep(for_s)
    component.process.start()
    fault.ended = time.time()
    console.print(f"  {component.name} back at {load.elapsed():.0f}s")
    return fault


def _with_alerts(
    result: DrillResult, settings: Settings, fault: Fault, expected: list[Expected]
) -> DrillResult:
    """The monitor's timeline of the drill, once its alerts resolved, and the verdict on it."""
    with console.status(f"{result.name}: waiting for its alerts to resolve"):
        result.timeline = wait_until_resolved(
            settings, fault.load_started, fault.began, fault.ended, RESOLVE_TIMEOUT_S
        )
    problems = judge(result.timeline, expected)
    result.notes.extend(problems)
    result.ok = result.ok and not problems
    return result


def _audited(name: str, load: SteadyLoad, timeout_s: float = 180) -> DrillResult:
    load.wait()
    with console.status(f"{name}: waiting for everything to land"):
        audit = audit_run(load.run_id, load.sent(), abandoned=load.abandoned(), timeout_s=timeout_s)
    # The audit tells a span that landed twice from a request k6 gave up on that the
    # server answered all the same (which lands without being counted as sent).
    result = DrillResult(name, audit)
    result.ok = audit.missing == 0 and audit.duplicates == 0
    return result


def collector_crash(settings: Settings, rps: float) -> DrillResult:
    console.print("[bold]drill 1[/bold]: kill -9 the collector for 10 s")
    load = SteadyLoad(rps=rps, duration_s=40).start()
    fault = _outage(load, Collector(settings), at_s=10, for_s=10, kill=True)
    return _with_alerts(_audited("collector killed for 10 s", load), settings, fault, [])


def clickhouse_outage(settings: Settings, rps: float) -> DrillResult:
    console.print(f"[bold]drill 2[/bold]: stop ClickHouse for {CLICKHOUSE_OUTAGE_S} s")
    clickhouse = ClickHouse(settings)
    load = SteadyLoad(rps=rps, duration_s=CLICKHOUSE_OUTAGE_S + 30).start()
    fault = _outage(load, clickhouse, at_s=10, for_s=CLICKHOUSE_OUTAGE_S, kill=False)
    _wait_healthy(clickhouse)
    result = _audited(f"ClickHouse stopped for {CLICKHOUSE_OUTAGE_S} s", load)
    return _with_alerts(
        result,
        settings,
        fault,
        [
            Expected("clickpulse-clickhouse-unreachable", within_s=60),
            Expected("clickpulse-collector-backlog", within_s=CLICKHOUSE_OUTAGE_S),
        ],
    )


def postgres_outage(settings: Settings, rps: float) -> DrillResult:
    console.print(f"[bold]drill 3[/bold]: stop PostgreSQL for {POSTGRES_OUTAGE_S} s")
    postgres = Postgres(settings)
    url = f"http://{settings.host}:{settings.ports.crud_api}/products?limit=1"
    load = SteadyLoad(rps=rps, duration_s=POSTGRES_OUTAGE_S + 30).start()
    fault = Fault(load_started=time.time() - load.elapsed())
    while load.elapsed() < 10:
        time.sleep(0.1)
    fault.began = time.time()
    postgres.process.stop()
    down_at = time.monotonic()
    statuses: Counter[int] = Counter()
    bodies: set[str] = set()
    with httpx.Client(timeout=10) as client:
        while time.monotonic() - down_at < POSTGRES_OUTAGE_S:
            response = client.get(url)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                bodies.add(response.text[:160])
            time.sleep(0.25)
        postgres.process.start()
        fault.ended = time.time()
        back_at = time.monotonic()
        recovered = None
        while time.monotonic() - back_at < 30:
            if client.get(url).status_code == 200:
                recovered = time.monotonic() - back_at
                break
            time.sleep(0.25)
    result = _audited(f"PostgreSQL stopped for {POSTGRES_OUTAGE_S} s", load)
    result.notes.append(f"answers while down: {dict(statuses)}")
    result.notes.extend(f"body: {b}" for b in sorted(bodies))
    result.notes.append(
        "recovered "
        + (f"{recovered:.1f}s after restart" if recovered is not None else "NOT within 30 s")
    )
    result.ok = (
        result.ok
        and statuses[500] == 0
        and recovered is not None
        and all("database" in b for b in bodies)
    )
    return _with_alerts(
        result,
        settings,
        fault,
        [
            Expected("clickpulse-5xx-share", within_s=120),
            Expected("clickpulse-postgres-down", within_s=90),
        ],
    )


def _timeline_rows(results: list[DrillResult]) -> list[dict[str, str]]:
    rows = []
    for r in results:
        timeline = r.timeline
        if timeline is None:
            continue
        if not timeline.spans:
            rows.append(
                {"drill": r.name, "alert": "(none)", "pending": "", "firing": "", "resolved": ""}
                | {"fault ended": timeline.relative(timeline.recovered_at)}
            )
        for span in timeline.spans:
            rows.append(
                {
                    "drill": r.name,
                    "alert": span.name,
                    "pending": timeline.relative(span.pending_at),
                    "firing": timeline.relative(span.firing_at),
                    "resolved": timeline.relative(span.resolved_at),
                    "fault ended": timeline.relative(timeline.recovered_at),
                }
            )
    return rows


def _doc_section(rps: float, results: list[DrillResult], rows: list[dict[str, str]]) -> str:
    counts = [
        {
            "drill": r.name,
            "sent": r.audit.sent,
            "landed": r.audit.landed_distinct,
            "lost": r.audit.missing,
            "duplicates": r.audit.duplicates,
            "result": "ok" if r.ok else "FAILED",
        }
        for r in results
    ]
    notes = "\n".join(f"- {r.name}: {note}" for r in results for note in r.notes)
    return (
        "## 9. Fault drills and alerts\n\n"
        f"`nox -s drills` at {rps:g} req/s (k6, the mixed scenario), with the monitor evaluating"
        " the alert rules as it always does. Times are from the fault's start; the goals are a"
        " ClickHouse outage reported (firing) within 60 s and a 5xx share above its threshold"
        " within 2 minutes.\n\n"
        + md_table(counts)
        + "\n\nAlert timeline (the monitor's transitions, `<state>/monitor/alert-events.jsonl`):"
        "\n\n"
        + md_table(rows)
        + ("\n\n" + notes if notes else "")
        + "\n\nCommand: `nox -s drills`."
    )


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    rps = float(args[0]) if args else 50.0
    settings = Settings.from_env()
    require_monitor(settings)
    results = [
        collector_crash(settings, rps),
        clickhouse_outage(settings, rps),
        postgres_outage(settings, rps),
    ]
    table = Table(title=f"fault drills at {rps:g} req/s")
    for column in (
        "drill",
        "sent",
        "landed",
        "lost",
        "duplicates",
        "abandoned, answered",
        "result",
    ):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.name,
            str(r.audit.sent),
            str(r.audit.landed_distinct),
            str(r.audit.missing),
            str(r.audit.duplicates),
            str(r.audit.abandoned_landed),
            "[green]ok[/green]" if r.ok else "[red]FAILED[/red]",
        )
    console.print(table)
    rows = _timeline_rows(results)
    timeline = Table(title="alert timeline (from the fault's start)")
    for column in ("drill", "alert", "pending", "firing", "resolved", "fault ended"):
        timeline.add_column(column)
    for row in rows:
        timeline.add_row(
            *(
                row.get(c, "")
                for c in ("drill", "alert", "pending", "firing", "resolved", "fault ended")
            )
        )
    console.print(timeline)
    for r in results:
        for note in r.notes:
            console.print(f"{r.name}: {note}", highlight=False)
    write_doc("nox -s drills", versions(settings), {"9": _doc_section(rps, results, rows)})
    return 0 if all(r.ok for r in results) else 1
