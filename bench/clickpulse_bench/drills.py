"""`nox -s drills`: faults under a steady load, counting what k6 sent against what landed.

1. kill -9 the collector, restart it 10 s later: spans held by the services' SDK exporters
   (retrying) and the collector's persistent queue must all arrive.
2. stop ClickHouse for 30 s: the collector's file-backed sending queue delivers afterwards.
3. stop PostgreSQL for 10 s: the services answer 503 with a clear body (never 500) and recover
   by themselves.
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
from clickpulse_bench.steady_load import SteadyLoad

console = Console()


@dataclass
class DrillResult:
    name: str
    audit: Audit
    notes: list[str] = field(default_factory=list)
    ok: bool = True


def _wait_healthy(component: Component, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not component.process.healthy():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{component.name} did not come back")
        time.sleep(0.2)


def _outage(
    load: SteadyLoad, component: Component, *, at_s: float, for_s: float, kill: bool
) -> None:
    while load.elapsed() < at_s:
        time.sleep(0.1)
    if component.process.running() is None:
        raise RuntimeError(f"{component.name} is not running: start the stack with `nox -s up`")
    if kill:
        component.process.kill()
    else:
        component.process.stop()
    console.print(f"  {component.name} {'killed' if kill else 'stopped'} at {load.elapsed():.0f}s")
    time.sleep(for_s)
    component.process.start()
    console.print(f"  {component.name} back at {load.elapsed():.0f}s")


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
    _outage(load, Collector(settings), at_s=10, for_s=10, kill=True)
    return _audited("collector killed for 10 s", load)


def clickhouse_outage(settings: Settings, rps: float) -> DrillResult:
    console.print("[bold]drill 2[/bold]: stop ClickHouse for 30 s")
    clickhouse = ClickHouse(settings)
    load = SteadyLoad(rps=rps, duration_s=60).start()
    _outage(load, clickhouse, at_s=10, for_s=30, kill=False)
    _wait_healthy(clickhouse)
    return _audited("ClickHouse stopped for 30 s", load)


def postgres_outage(settings: Settings, rps: float) -> DrillResult:
    console.print("[bold]drill 3[/bold]: stop PostgreSQL for 10 s")
    postgres = Postgres(settings)
    url = f"http://{settings.host}:{settings.ports.crud_api}/products?limit=1"
    load = SteadyLoad(rps=rps, duration_s=40).start()
    while load.elapsed() < 10:
        time.sleep(0.1)
    postgres.process.stop()
    down_at = time.monotonic()
    statuses: Counter[int] = Counter()
    bodies: set[str] = set()
    with httpx.Client(timeout=10) as client:
        while time.monotonic() - down_at < 10:
            response = client.get(url)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                bodies.add(response.text[:160])
            time.sleep(0.25)
        postgres.process.start()
        back_at = time.monotonic()
        recovered = None
        while time.monotonic() - back_at < 30:
            if client.get(url).status_code == 200:
                recovered = time.monotonic() - back_at
                break
            time.sleep(0.25)
    result = _audited("PostgreSQL stopped for 10 s", load)
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
    return result


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    rps = float(args[0]) if args else 50.0
    settings = Settings.from_env()
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
    for r in results:
        for note in r.notes:
            console.print(f"{r.name}: {note}", highlight=False)
    return 0 if all(r.ok for r in results) else 1
